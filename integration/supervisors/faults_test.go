//go:build linux

package supervisors

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/svtest"
)

// The fault-injection suite of the supervisor-restart topology: the
// server (internal/faultserver, the demo server with fault hooks) runs
// under a real supervisor, is restarted through it under load from
// loadgen (16 clients per mode, fresh and keep-alive, no retries), and
// something goes wrong on the way. Each case checks that the service
// kept answering, that no request failed — or, where the fault makes
// that impossible, that the failures are few and of the kind the fault
// explains —, that the logs name the cause, and that a final stop leaves
// nothing running and a port that refuses.
//
// runit runs every case: runsv writes "want up/down" before it signals
// (daemontools and s6 write it after, a race that has its own handling
// and is not what these cases are about), restarts a process that ran
// for a second or more at once and one that ran less after a second,
// and "sv term" returns without waiting, which the cases need to watch
// a restart that does not end well. The supervisor-specific facts are
// covered by TestSupervisors on all three.

const (
	// faultComm is the name of the fault server's binary: the kernel's
	// name for its processes (interims, started from /proc/self/exe, are
	// "exe").
	faultComm = "batonfault"

	// faultTimeout is the server's -upgrade-timeout: how long a new
	// instance may take from its take-over to Ready, short so that a
	// hanging one is killed soon.
	faultTimeout = 2 * time.Second

	// faultDrain is the server's -drain, and so what a plain stop may
	// take.
	faultDrain = 3 * time.Second

	// recoverTimeout bounds the wait for a serving instance after a
	// fault: a few of runsv's one-second restart pauses and an upgrade
	// timeout, with room for a loaded machine.
	recoverTimeout = 30 * time.Second

	// faultRunTimeout bounds one load run: warmup, the fault and the
	// recovery, settle.
	faultRunTimeout = 60 * time.Second

	// minFaultRequests is the least load that means anything over a run
	// of a few seconds.
	minFaultRequests = 500

	// maxInFlight is how many load requests can be in flight at once:
	// 16 clients per mode, one request each, and the slow one. A fault
	// that kills a serving process can fail at most these.
	maxInFlight = 2*16 + 1

	// maxOutageFailures bounds the failures of an outage: 32 clients
	// that pause 5ms after each failure fail at most 6400 requests a
	// second; the cases that have an outage (runsv's one-second pause
	// before it restarts a process that ran for less) allow 3 seconds.
	maxOutageFailures = 3 * 32 * 1000 / 5
)

// TestFaults runs each fault case on a service of its own, one after the
// other: each loads both cores of a small machine.
func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(t *testing.T)
	}{
		{"new-instance-exits-before-listen", func(t *testing.T) { testNewInstanceExits(t, "before-listen") }},
		{"new-instance-exits-after-listen", func(t *testing.T) { testNewInstanceExits(t, "after-listen") }},
		{"new-instance-exits-serving-before-ready", testNewInstanceExitsServing},
		{"new-instance-exits-after-ready", testNewInstanceExitsAfterReady},
		{"probation=on exit@100ms", func(t *testing.T) { testNewInstanceDiesOnProbation(t, "exit@100ms", true) }},
		{"probation=on exit@500ms", func(t *testing.T) { testNewInstanceDiesOnProbation(t, "exit@500ms", true) }},
		{"probation=on kill@100ms", func(t *testing.T) { testNewInstanceDiesOnProbation(t, "kill@100ms", true) }},
		{"probation=on kill@500ms", func(t *testing.T) { testNewInstanceDiesOnProbation(t, "kill@500ms", true) }},
		{"probation=off exit@100ms", func(t *testing.T) { testNewInstanceDiesOnProbation(t, "exit@100ms", false) }},
		{"new-instance-hangs", func(t *testing.T) { testNewInstanceNeverReady(t, "hang") }},
		{"new-instance-sigstopped", func(t *testing.T) { testNewInstanceNeverReady(t, "sigstop") }},
		{"run-missing-binary", func(t *testing.T) { testRunCannotStart(t, "missing") }},
		{"run-non-executable", func(t *testing.T) { testRunCannotStart(t, "noexec") }},
		{"binary-replaced-by-broken-build", func(t *testing.T) { testRunCannotStart(t, "broken") }},
		{"stop-while-interim-serves", testStopWhileInterimServes},
		{"supervisor-killed-while-interim-serves", testSupervisorGone},
		{"interim-killed-before-descriptors", testInterimKilledBeforeFds},
		{"interim-killed-before-ready", testInterimKilledBeforeReady},
		{"old-instance-killed-during-handover", testOldKilledDuringHandover},
		{"restart-storm", testRestartStorm},
		{"slow-clients-past-drain", testSlowClientsPastDrain},
	} {
		t.Run(tc.name, tc.run)
	}
}

// A faultService is the fault server run by runit, with its fault file.
type faultService struct {
	t     *testing.T
	sup   *svtest.Supervisor
	svc   *svtest.Service
	bin   string // Root/bin/batonfault: a copy of faultBin, what ./run execs
	fault string // the fault file (see internal/faultserver)
	args  []string
	first int // the pid that served first
	// base is what the first instance, started fresh, holds: the
	// yardstick of the survivor's descriptors.
	base fdKinds
}

// startFaults runs the fault server under runit with a drain deadline of
// drain and the flags extra, and returns once it serves.
func startFaults(t *testing.T, drain time.Duration, extra ...string) *faultService {
	t.Helper()
	svtest.Require(t, svtest.Runit)
	svc := svtest.NewService(t)
	f := &faultService{
		t:     t,
		svc:   svc,
		bin:   filepath.Join(svc.Root, "bin", faultComm),
		fault: filepath.Join(svc.Root, "fault"),
	}
	if err := copyFile(faultBin, f.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	f.args = []string{
		"-listen", svc.Addr,
		"-pid-file", svc.PIDFile,
		"-control", svc.Control,
		"-drain", drain.String(),
		"-upgrade-timeout", faultTimeout.String(),
		"-fault", f.fault,
	}
	f.args = append(f.args, extra...)
	f.writeRun(f.bin)
	f.sup = svtest.Start(t, svtest.Runit, svc)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	pid, err := f.sup.WaitServing(ctx, 0)
	if err != nil {
		t.Fatalf("the server never served: %v", err)
	}
	f.first = pid
	fds, err := svtest.FDs(pid)
	if err != nil {
		t.Fatal(err)
	}
	if f.base, err = f.kinds(fds); err != nil {
		t.Fatal(err)
	}
	return f
}

// writeRun points the run script at exe, with the server's arguments.
func (f *faultService) writeRun(exe string) {
	f.t.Helper()
	if err := f.svc.WriteRun(append([]string{exe}, f.args...)...); err != nil {
		f.t.Fatal(err)
	}
}

// setFault arms the fault server: the next count processes of role that
// reach point do action.
func (f *faultService) setFault(role, point, action string, count int) {
	f.t.Helper()
	line := fmt.Sprintf("%s %s %s %d\n", role, point, action, count)
	if err := os.WriteFile(f.fault, []byte(line), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// waitGate waits until a process waits at the fault's gate, and returns
// its pid.
func (f *faultService) waitGate(ctx context.Context) (int, error) {
	for {
		m, _ := filepath.Glob(f.fault + ".waiting.*")
		if len(m) > 0 {
			return strconv.Atoi(strings.TrimPrefix(m[0], f.fault+".waiting."))
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for a process at the gate of %s: %w", f.fault, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// openGate lets the process waiting at the gate go on.
func (f *faultService) openGate() error {
	return os.WriteFile(f.fault+".open", nil, 0o600)
}

// output is everything the server's processes logged.
func (f *faultService) output() string {
	b, _ := os.ReadFile(f.svc.Output)
	return string(b)
}

// logOf returns the lines that process pid logged.
func (f *faultService) logOf(pid int) string {
	var b strings.Builder
	tag := fmt.Sprintf(" pid=%d ", pid)
	for _, l := range strings.Split(f.output(), "\n") {
		if strings.Contains(l+" ", tag) {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// waitLog waits until the output holds at least n lines matching re.
func (f *faultService) waitLog(ctx context.Context, re *regexp.Regexp, n int) error {
	for {
		if len(re.FindAllStringIndex(f.output(), -1)) >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d lines matching %q in the server's output: %w", n, re, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// requireLog fails the test unless the output matches re at least n
// times.
func (f *faultService) requireLog(re *regexp.Regexp, n int, why string) {
	f.t.Helper()
	if got := len(re.FindAllStringIndex(f.output(), -1)); got < n {
		f.t.Errorf("%s: the server's output matches %q %d times; want at least %d", why, re, got, n)
	}
}

// servingPID asks the server which process answers.
func (f *faultService) servingPID(ctx context.Context) (int, error) {
	probe, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return f.svc.ServingPID(probe)
}

// load runs loadgen against the service with one "upgrade": the fault
// scenario, which must return once it has seen what it waits for.
func (f *faultService) load(scenario func(ctx context.Context) error) *loadgen.Report {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), faultRunTimeout)
	defer cancel()
	rep, err := loadgen.Run(ctx, loadgen.Config{
		URL:       f.svc.URL(),
		Clients:   16,
		Modes:     []loadgen.Mode{loadgen.Fresh, loadgen.KeepAlive},
		Upgrades:  1,
		Upgrade:   scenario,
		Warmup:    500 * time.Millisecond,
		Settle:    loadgen.DefaultSettle,
		SlowDelay: 300 * time.Millisecond,
	})
	if err != nil {
		f.t.Fatalf("loadgen.Run: %v", err)
	}
	var b strings.Builder
	rep.WriteText(&b)
	f.t.Logf("load across the fault:\n%s", b.String())
	if rep.Requests < minFaultRequests {
		f.t.Errorf("only %d requests were made; want at least %d for the run to mean anything", rep.Requests, minFaultRequests)
	}
	return rep
}

// requireZero fails the test for any failure in rep.
func (f *faultService) requireZero(rep *loadgen.Report) {
	f.t.Helper()
	for _, p := range rep.Problems() {
		f.t.Error(p)
	}
}

// requireBounded fails the test unless the scenario succeeded and the
// failed requests are at most max, all of the classes in allowed
// ("refused", "reset", "eof", …), and no slow request failed unless
// slowMayFail.
func (f *faultService) requireBounded(rep *loadgen.Report, max int64, slowMayFail bool, allowed ...string) {
	f.t.Helper()
	if rep.Stopped != "" || rep.Upgrades.OK != 1 {
		f.t.Errorf("the scenario did not complete: %s %v", rep.Verdict(), rep.Upgrades.Errors)
	}
	if rep.FailedRequests > max {
		f.t.Errorf("%d failed requests; want at most %d: %s", rep.FailedRequests, max, rep.Verdict())
	}
	for _, m := range rep.Modes {
		fl := m.Failures
		for name, n := range map[string]int64{"refused": fl.Refused, "reset": fl.Reset, "eof": fl.EOF, "timeout": fl.Timeout, "non-200": fl.Non200, "other": fl.Other} {
			if n > 0 && !contains(allowed, name) {
				f.t.Errorf("%s clients: %d %s failures, a kind this fault does not explain (want only %v): %v", m.Mode, n, name, allowed, fl.Examples[name])
			}
		}
	}
	if !slowMayFail && rep.Slow != nil && rep.Slow.Failed > 0 {
		f.t.Errorf("slow requests failed: %v", rep.Slow.Errors)
	}
	f.t.Logf("failed requests: %d (bound %d): %s", rep.FailedRequests, max, rep.Verdict())
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// recovered waits until the supervisor tracks a process other than old
// that serves.
func (f *faultService) recovered(ctx context.Context, old int) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	return f.sup.WaitServing(ctx, old)
}

// finish checks the survivor's descriptors, then stops the service for
// good and checks that nothing of it is left: no server process (an
// interim included), no zombie, a port that refuses.
func (f *faultService) finish() {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
	pid, err := f.sup.WaitServing(ctx, 0)
	cancel()
	if err != nil {
		f.t.Errorf("before the final stop: %v", err)
	} else {
		f.checkFDs(pid)
	}
	stop(f.t, f.sup, f.bin)
	// stop looks for processes by executable; an interim whose binary
	// was replaced runs a deleted file, so look by place too.
	deadline := time.Now().Add(2 * time.Second)
	for {
		var left []svtest.Process
		for _, p := range svtest.ProcessesUnder(f.svc.Root) {
			if p.PID != f.sup.PID() {
				left = append(left, p)
			}
		}
		zombies := svtest.ZombieChildren([]int{os.Getpid(), f.sup.PID()}, faultComm, "exe")
		if len(left) == 0 && len(zombies) == 0 {
			return
		}
		if time.Now().After(deadline) {
			for _, p := range left {
				f.t.Errorf("after the final stop, still running: %v", p)
			}
			for _, p := range zombies {
				f.t.Errorf("after the final stop, a zombie nobody reaps: %v", p)
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkFDs fails the test if the serving process pid holds descriptors
// that a process started fresh does not, beyond the one connection to its
// predecessor that a process that took over keeps until it exits (its
// EOF is how it learns that the predecessor is gone): the listening
// socket more often, another socket, a pidfd of a successor long gone.
func (f *faultService) checkFDs(pid int) {
	f.t.Helper()
	var got fdKinds
	var why []string
	// Connections of the load and the probes are closing; give them a
	// moment to go.
	for try := 0; try < 50; try++ {
		fds, err := svtest.FDs(pid)
		if err == nil {
			got, err = f.kinds(fds)
		}
		if err != nil {
			f.t.Errorf("descriptors of the survivor, pid %d: %v", pid, err)
			return
		}
		why = got.beyond(f.base)
		if len(why) == 0 {
			f.t.Logf("the survivor, pid %d, holds %v; the first instance held %v", pid, got, f.base)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.t.Errorf("the survivor, pid %d, holds descriptors that a fresh start does not: %s (fresh: %v %v; survivor: %v %v)", pid, strings.Join(why, "; "), f.base, f.base.All, got, got.All)
}

// fdKinds counts a process's descriptors by kind.
type fdKinds struct {
	Total, Listeners, Sockets, Pidfds int
	All                               map[int]string
}

func (k fdKinds) String() string {
	return fmt.Sprintf("%d descriptors: the listener %d times, %d sockets, %d pidfds", k.Total, k.Listeners, k.Sockets, k.Pidfds)
}

func (f *faultService) kinds(fds map[int]string) (fdKinds, error) {
	listen, err := listeningInode(f.svc.Addr)
	if err != nil {
		return fdKinds{}, err
	}
	k := fdKinds{Total: len(fds), All: fds}
	for _, l := range fds {
		ino, sock := procfs.ParseSocketLink(l)
		switch {
		case sock && ino == listen:
			k.Listeners++
			k.Sockets++
		case sock:
			k.Sockets++
		case strings.Contains(l, "pidfd"):
			k.Pidfds++
		}
	}
	return k, nil
}

// beyond says what k holds beyond base and the predecessor connection.
func (k fdKinds) beyond(base fdKinds) []string {
	var why []string
	if k.Listeners != base.Listeners {
		why = append(why, fmt.Sprintf("the listening socket %d times, a fresh start %d", k.Listeners, base.Listeners))
	}
	if k.Sockets > base.Sockets+1 {
		why = append(why, fmt.Sprintf("%d sockets, a fresh start %d (and one for the predecessor)", k.Sockets, base.Sockets))
	}
	if k.Pidfds > base.Pidfds {
		why = append(why, fmt.Sprintf("%d pidfds, a fresh start %d", k.Pidfds, base.Pidfds))
	}
	if k.Total > base.Total+1 {
		why = append(why, fmt.Sprintf("%d descriptors, a fresh start %d (and one for the predecessor)", k.Total, base.Total))
	}
	return why
}

// listeningInode returns the inode of the TCP socket listening on addr,
// from /proc/net/tcp.
func listeningInode(addr string) (uint64, error) {
	want, err := netip.ParseAddrPort(addr)
	if err != nil {
		return 0, err
	}
	socks, err := procfs.NetTCP()
	if err != nil {
		return 0, err
	}
	for _, s := range socks {
		if s.Local == want && s.State == procfs.TCPListen {
			return s.Inode, nil
		}
	}
	return 0, fmt.Errorf("no socket listens on %s in /proc/net/tcp", addr)
}

// copyFile copies src to dst with mode perm, creating dst's directory.
func copyFile(src, dst string, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// replaceFile puts a copy of src at dst atomically, as a deploy does.
func replaceFile(src, dst string, perm os.FileMode) error {
	tmp := dst + ".new"
	if err := copyFile(src, tmp, perm); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// The interim generation's log lines.
var (
	reUpgradeFailed  = regexp.MustCompile(`msg="upgrade failed; still serving"[^\n]*new instance \(pid \d+\)`)
	reAttemptFailed  = regexp.MustCompile(`msg="interim generation: the supervisor's new instance exited without taking over; still serving the old code"`)
	reInterimWantDn  = regexp.MustCompile(`msg="interim generation: the supervisor wants the service down; stopping"`)
	reInterimSvGone  = regexp.MustCompile(`msg="interim generation: the supervisor is gone`)
	reStartingFresh  = regexp.MustCompile(`msg="no running instance on the control socket: starting fresh"`)
	reTookOverCtl    = regexp.MustCompile(`msg="took over through the control socket"`)
	reInterimStarted = regexp.MustCompile(`msg="starting the interim generation from the running binary"`)
)

// A new instance that exits before it is ready — before Listen, or after
// it but before it serves and says Ready — leaves the interim generation serving: the
// supervisor starts ./run again a second later, twice, and the third
// instance takes over. Not one request fails: until Ready the interim
// one accepts every connection.
func testNewInstanceExits(t *testing.T, point string) {
	f := startFaults(t, faultDrain)
	const fails = 2
	f.setFault("instance", point, "exit", fails)
	var survivor int
	rep := f.load(func(ctx context.Context) error {
		if err := f.sup.Term(ctx); err != nil {
			return err
		}
		pid, err := f.recovered(ctx, f.first)
		survivor = pid
		return err
	})
	f.requireZero(rep)
	f.requireLog(regexp.MustCompile(`msg="fault: exit `+point+`"`), fails, "each failing instance logs its fault")
	// The interim generation says why each take-over failed: the new
	// instance closed the handoff before it was ready, and exited.
	f.requireLog(regexp.MustCompile(reUpgradeFailed.String()+`[^\n]*failed before it was ready: [^\n]*exited`), fails, "the interim generation names the failure")
	if survivor != 0 && !reTookOverCtl.MatchString(f.logOf(survivor)) {
		t.Errorf("the survivor, pid %d, did not take over through the control socket; its log:\n%s", survivor, f.logOf(survivor))
	}
	f.finish()
}

// A new instance that serves before it says Ready, as the demo server
// does (it accepts from the shared queue while its predecessor still
// does too), and exits before Ready, loses the requests it had accepted:
// they are in its process, not in the queue, and die with it. At most
// one per client and the slow one, reset or cut short; the interim
// generation serves all the others, and the next instance takes over.
// An application that starts serving only after Ready closes even that
// window: the kernel queues connections meanwhile (the after-listen
// case has no failures).
func testNewInstanceExitsServing(t *testing.T) {
	f := startFaults(t, faultDrain)
	f.setFault("instance", "before-ready", "exit", 1)
	rep := f.load(func(ctx context.Context) error {
		if err := f.sup.Term(ctx); err != nil {
			return err
		}
		_, err := f.recovered(ctx, f.first)
		return err
	})
	f.requireBounded(rep, maxInFlight, true, "reset", "eof")
	f.requireLog(regexp.MustCompile(`msg="fault: exit before-ready"`), 1, "the failing instance logs its fault")
	f.requireLog(regexp.MustCompile(reUpgradeFailed.String()+`[^\n]*failed before it was ready: [^\n]*exited`), 1, "the interim generation names the failure")
	f.finish()
}

// A new instance that exits right after Ready takes the service down
// with it: its predecessor, the interim generation, committed to it on
// Ready and closed its own listener while draining, so nobody holds the
// listening socket until the supervisor's next instance binds it afresh,
// a second later (runsv pauses a second after a process that ran for
// less). That is a crash of the serving process, which no handoff can
// hide: the connections in its accept queue are reset, and new ones are
// refused until then. The failures are bounded by that second and of
// those kinds; the next instance finds the control socket stale and
// starts fresh.
func testNewInstanceExitsAfterReady(t *testing.T) {
	f := startFaults(t, faultDrain)
	f.setFault("instance", "after-ready", "exit", 1)
	var survivor int
	rep := f.load(func(ctx context.Context) error {
		if err := f.sup.Term(ctx); err != nil {
			return err
		}
		// The crashing instance serves for a moment; wait for the one
		// after it, which starts fresh.
		if err := f.waitLog(ctx, reStartingFresh, 2); err != nil {
			return err
		}
		pid, err := f.recovered(ctx, f.first)
		survivor = pid
		return err
	})
	f.requireBounded(rep, maxOutageFailures, true, "refused", "reset", "eof")
	f.requireLog(regexp.MustCompile(`msg="fault: exit after-ready"`), 1, "the crashing instance logs its fault")
	if survivor != 0 && !reStartingFresh.MatchString(f.logOf(survivor)) {
		t.Errorf("the survivor, pid %d, did not start fresh; its log:\n%s", survivor, f.logOf(survivor))
	}
	f.finish()
}

// probationWindow is the fault server's -probation in the probation
// cases: long enough that 500ms after ready is well inside it.
const probationWindow = 2 * time.Second

var (
	reFailedOnProbation = regexp.MustCompile(`msg="upgrade failed; still serving"[^\n]*failed on probation: died [^\n]*after ready`)
	rePassed            = regexp.MustCompile(`msg="successor passed its probation"`)
)

// A new instance that dies after its Ready — it exits or is SIGKILLed
// (action, at point after-ready) — with -probation on: the interim
// generation it took over from never stopped accepting, so not one
// connection is refused and the service is never down; the interim one
// says why the take-over failed, serves on, and the supervisor's next
// instance takes over and passes. Only what the dying instance had
// accepted dies with it: at most one request per client and the slow
// one (maxInFlight), reset or cut short. With -probation off the same
// fault is testNewInstanceExitsAfterReady's outage: the interim one
// drained on the Ready, and nobody holds the socket until runsv starts
// the next instance a second later. Both log their figures for the
// side-by-side report.
func testNewInstanceDiesOnProbation(t *testing.T, action string, on bool) {
	var extra []string
	if on {
		extra = []string{"-probation", probationWindow.String()}
	}
	f := startFaults(t, faultDrain, extra...)
	f.setFault("instance", "after-ready", action, 1)
	var survivor int
	rep := f.load(func(ctx context.Context) error {
		if err := f.sup.Term(ctx); err != nil {
			return err
		}
		if on {
			// The dying instance serves on probation and is tracked
			// by runsv: wait for its failure and its successor's pass
			// before asking who serves.
			if err := f.waitLog(ctx, reFailedOnProbation, 1); err != nil {
				return err
			}
			if err := f.waitLog(ctx, rePassed, 1); err != nil {
				return err
			}
		} else if err := f.waitLog(ctx, reStartingFresh, 2); err != nil {
			return err
		}
		pid, err := f.recovered(ctx, f.first)
		survivor = pid
		return err
	})
	fl := rep.Modes[0].Failures
	for _, m := range rep.Modes[1:] {
		fl.Refused += m.Failures.Refused
		fl.Reset += m.Failures.Reset
		fl.EOF += m.Failures.EOF
	}
	state := map[bool]string{true: "on", false: "off"}[on]
	t.Logf("runit probation=%s %s: refused %d, failed %d (reset %d, eof %d), requests %d", state, action, fl.Refused, rep.FailedRequests, fl.Reset, fl.EOF, rep.Requests)
	f.requireLog(regexp.MustCompile(`msg="fault: `+regexp.QuoteMeta(action)+` after-ready"`), 1, "the dying instance logs its fault")
	if !on {
		f.requireBounded(rep, maxOutageFailures, true, "refused", "reset", "eof")
		f.finish()
		return
	}
	f.requireBounded(rep, maxInFlight, true, "reset", "eof")
	// The interim generation is not the new instance's parent: it sees
	// the death through a pidfd, and the exit status goes to runsv, so
	// the error says that it died and when, not how.
	f.requireLog(reFailedOnProbation, 1, "the interim generation names the failure on probation")
	if survivor != 0 && !reTookOverCtl.MatchString(f.logOf(survivor)) {
		t.Errorf("the survivor, pid %d, did not take over through the control socket; its log:\n%s", survivor, f.logOf(survivor))
	}
	f.finish()
}

// A new instance that never says Ready — it hangs, or stops itself with
// SIGSTOP — is killed by the interim generation after UpgradeTimeout,
// which serves meanwhile and goes on serving; the supervisor's next
// instance takes over. Not one request fails.
func testNewInstanceNeverReady(t *testing.T, action string) {
	f := startFaults(t, faultDrain)
	f.setFault("instance", "after-listen", action, 1)
	rep := f.load(func(ctx context.Context) error {
		if err := f.sup.Term(ctx); err != nil {
			return err
		}
		_, err := f.recovered(ctx, f.first)
		return err
	})
	f.requireZero(rep)
	f.requireLog(regexp.MustCompile(`msg="fault: `+action+` after-listen"`), 1, "the instance logs its fault")
	f.requireLog(regexp.MustCompile(reUpgradeFailed.String()+`[^\n]*not ready after `+faultTimeout.String()+`, killed`), 1, "the interim generation names the timeout")
	f.finish()
}

// The supervisor cannot start the new instance at all: ./run execs a
// missing binary, a file that is not executable, or a broken build a
// deploy put in place of the binary just before the restart. The
// supervisor retries every second. The interim generation serves the
// old code all along — past several upgrade timeouts, after which it
// used to give up and take the service down while the supervisor still
// wanted it up — and says at error level that the attempts fail. Once
// the deploy is fixed, the next attempt takes over. Not one request
// fails.
//
// The broken build is also the regression test of where the interim
// generation comes from: the running binary, not the file, which the
// deploy replaced; an interim started from the broken build would fail,
// and the restart would become an outage.
func testRunCannotStart(t *testing.T, how string) {
	f := startFaults(t, faultDrain)
	var cause *regexp.Regexp
	switch how {
	case "missing":
		f.writeRun(filepath.Join(f.svc.Root, "bin", "missing"))
		cause = regexp.MustCompile(`bin/missing: not found`)
	case "noexec":
		noexec := filepath.Join(f.svc.Root, "bin", "noexec")
		if err := copyFile(faultBin, noexec, 0o644); err != nil {
			t.Fatal(err)
		}
		f.writeRun(noexec)
		cause = regexp.MustCompile(`bin/noexec: Permission denied`)
	case "broken":
		broken := filepath.Join(f.svc.Root, "broken")
		if err := os.WriteFile(broken, []byte("#!/bin/sh\necho 'broken build: cannot load config' >&2\nexit 3\n"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := replaceFile(broken, f.bin, 0o755); err != nil {
			t.Fatal(err)
		}
		cause = regexp.MustCompile(`broken build: cannot load config`)
	}
	var interim int
	rep := f.load(func(ctx context.Context) error {
		if err := f.sup.Term(ctx); err != nil {
			return err
		}
		// Three failed attempts, which runsv makes a second apart, and
		// more than two upgrade timeouts: the interim generation used to
		// stop after one.
		began := time.Now()
		if err := f.waitLog(ctx, reAttemptFailed, 3); err != nil {
			return err
		}
		if d := time.Since(began); d < 2*faultTimeout {
			time.Sleep(2*faultTimeout - d)
		}
		pid, err := f.servingPID(ctx)
		if err != nil {
			return fmt.Errorf("while ./run cannot start: %w", err)
		}
		interim = pid
		// Fix the deploy: the next attempt takes over.
		switch how {
		case "broken":
			if err := replaceFile(faultBin, f.bin, 0o755); err != nil {
				return err
			}
		default:
			f.writeRun(f.bin)
		}
		_, err = f.recovered(ctx, f.first)
		return err
	})
	f.requireZero(rep)
	f.requireLog(cause, 3, "the failed attempts' output names the cause")
	if interim == f.first || interim == 0 {
		t.Errorf("while ./run could not start, pid %d served; want the interim generation, not the old instance %d", interim, f.first)
	} else if !reAttemptFailed.MatchString(f.logOf(interim)) {
		t.Errorf("the interim generation, pid %d, did not log the failed attempts; its log:\n%s", interim, f.logOf(interim))
	}
	f.finish()
}

// A plain stop while the interim generation bridges a restart that
// cannot complete (./run execs a missing binary) stops the interim one
// too: nothing is left running and the port refuses.
func testStopWhileInterimServes(t *testing.T) {
	f := startFaults(t, faultDrain)
	f.writeRun(filepath.Join(f.svc.Root, "bin", "missing"))
	ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
	defer cancel()
	if err := f.sup.Term(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.waitLog(ctx, reAttemptFailed, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := f.servingPID(ctx); err != nil {
		t.Fatalf("the interim generation does not serve: %v", err)
	}
	stop(t, f.sup, f.bin)
	f.requireLog(reInterimWantDn, 1, "the interim generation says why it stops")
	f.writeRun(f.bin) // for teardown's names
	f.requireGone()
}

// requireGone fails the test for anything of a stopped service still
// running, and a port that does not refuse.
func (f *faultService) requireGone() {
	f.t.Helper()
	for _, p := range svtest.ProcessesUnder(f.svc.Root) {
		if p.PID != f.sup.PID() {
			f.t.Errorf("after the final stop, still running: %v", p)
		}
	}
	if err := f.svc.Refused(); err != nil {
		f.t.Errorf("after the final stop: %v", err)
	}
}

// When the supervisor itself dies (SIGKILL) while the interim generation
// bridges a restart that cannot complete, nobody will ever take over
// from the interim one or stop it: it stops by itself, and nothing is
// left running.
func testSupervisorGone(t *testing.T) {
	f := startFaults(t, faultDrain)
	f.writeRun(filepath.Join(f.svc.Root, "bin", "missing"))
	ctx, cancel := context.WithTimeout(context.Background(), recoverTimeout)
	defer cancel()
	if err := f.sup.Term(ctx); err != nil {
		t.Fatal(err)
	}
	if err := f.waitLog(ctx, reAttemptFailed, 1); err != nil {
		t.Fatal(err)
	}
	f.sup.Kill()
	if err := f.waitLog(ctx, reInterimSvGone, 1); err != nil {
		t.Error(err)
	}
	f.writeRun(f.bin)
	for {
		left := svtest.ProcessesUnder(f.svc.Root)
		if len(left) == 0 && f.svc.Refused() == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the supervisor is gone, and still running: %v; port: %v", left, f.svc.Refused())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// The interim generation is killed (SIGKILL) in the middle of the
// take-over handshake, after the new instance asked for the sockets and
// before it received any: to hold it there the test stops the interim
// one (SIGSTOP) first. The new instance must not wait forever: it reads
// EOF, says so and exits; the supervisor's next instance finds the
// control socket stale, binds afresh and serves.
//
// Requests fail, and cannot but fail: the stopped interim generation
// was the only holder of the listening socket, so the connections the
// kernel queued for it while it was stopped, and those it had accepted,
// are reset when it dies, and new ones are refused until the next
// instance binds, about a second later (runsv's pause).
func testInterimKilledBeforeFds(t *testing.T) {
	f := startFaults(t, faultDrain)
	f.setFault("instance", "before-new", "gate", 1)
	var killed, gated int
	rep := f.load(func(ctx context.Context) error {
		if err := f.sup.Term(ctx); err != nil {
			return err
		}
		pid, err := f.waitGate(ctx)
		if err != nil {
			return err
		}
		gated = pid
		interim, err := f.svc.PIDFromFile() // the interim one wrote it on Ready
		if err != nil {
			return err
		}
		if interim == f.first {
			return fmt.Errorf("the pid file still names the old instance %d while the new one %d is at the gate", f.first, gated)
		}
		killed = interim
		if err := syscall.Kill(interim, syscall.SIGSTOP); err != nil {
			return err
		}
		if err := f.openGate(); err != nil {
			return err
		}
		// The new instance connects and asks; wait until it holds the
		// connection, then kill the interim one under it.
		if err := waitSocket(ctx, gated); err != nil {
			syscall.Kill(interim, syscall.SIGKILL)
			return err
		}
		time.Sleep(100 * time.Millisecond) // for the request to be written: either way the new instance must not hang
		if err := syscall.Kill(interim, syscall.SIGKILL); err != nil {
			return err
		}
		_, err = f.recovered(ctx, f.first)
		return err
	})
	f.requireBounded(rep, maxOutageFailures, true, "refused", "reset", "eof")
	if gated != 0 {
		log := f.logOf(gated)
		if !regexp.MustCompile(`msg="cannot take over"[^\n]*(handoff from pid ` + strconv.Itoa(killed) + `|control socket)`).MatchString(log) {
			t.Errorf("the new instance, pid %d, does not say that the take-over from pid %d failed; its log:\n%s", gated, killed, log)
		}
	}
	f.requireLog(reStartingFresh, 1, "the next instance starts fresh")
	f.finish()
}

// waitSocket waits until process pid holds a socket.
func waitSocket(ctx context.Context, pid int) error {
	for {
		fds, err := svtest.FDs(pid)
		if err != nil {
			return fmt.Errorf("waiting for pid %d to connect: %w", pid, err)
		}
		for _, l := range fds {
			if _, sock := procfs.ParseSocketLink(l); sock {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for pid %d to connect: %w", pid, ctx.Err())
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// The interim generation is killed (SIGKILL) after the new instance
// received the sockets and before it said Ready. The new instance holds
// the listening socket already, serves from it, and on Ready finds its
// predecessor gone, which counts as done: it serves on, and the
// supervisor tracks it.
//
// The requests the interim generation had accepted fail — at most one
// per client, the one in flight, as a reset or EOF; the listening socket
// and its queue live on in the new instance, so nothing is refused.
func testInterimKilledBeforeReady(t *testing.T) {
	f := startFaults(t, faultDrain)
	f.setFault("instance", "before-ready", "gate", 1)
	var killed, gated, survivor int
	rep := f.load(func(ctx context.Context) error {
		if err := f.sup.Term(ctx); err != nil {
			return err
		}
		pid, err := f.waitGate(ctx)
		if err != nil {
			return err
		}
		gated = pid
		interim, err := f.svc.PIDFromFile()
		if err != nil {
			return err
		}
		if interim == f.first {
			return fmt.Errorf("the pid file still names the old instance %d while the new one %d is at the gate", f.first, gated)
		}
		killed = interim
		if err := syscall.Kill(interim, syscall.SIGKILL); err != nil {
			return err
		}
		if err := f.openGate(); err != nil {
			return err
		}
		survivor, err = f.recovered(ctx, f.first)
		return err
	})
	f.requireBounded(rep, maxInFlight, true, "reset", "eof")
	if survivor != 0 && survivor != gated {
		t.Errorf("pid %d serves; want the new instance %d, which had the sockets", survivor, gated)
	}
	if gated != 0 && !regexp.MustCompile(`msg="took over through the control socket"[^\n]*predecessor=`+strconv.Itoa(killed)).MatchString(f.logOf(gated)) {
		t.Errorf("the new instance, pid %d, does not say it took over from pid %d; its log:\n%s", gated, killed, f.logOf(gated))
	}
	f.finish()
}

// The old instance is killed (SIGKILL) while it hands its sockets to the
// interim generation, after the interim one received them and before it
// said Ready. The interim one serves from them, finds its predecessor
// gone on Ready and serves on; the supervisor, whose process died, starts
// ./run, and the new instance takes over from the interim one (an
// instance that comes before the interim one listens on the control
// socket cannot bind the port, exits, and is retried).
//
// The requests the old instance had accepted fail: at most one per
// client and the slow one, as a reset or EOF. The listening socket lives
// on in the interim generation, so nothing is refused.
func testOldKilledDuringHandover(t *testing.T) {
	f := startFaults(t, faultDrain)
	f.setFault("interim", "before-ready", "gate", 1)
	var interim int
	rep := f.load(func(ctx context.Context) error {
		if err := f.sup.Term(ctx); err != nil {
			return err
		}
		pid, err := f.waitGate(ctx)
		if err != nil {
			return err
		}
		interim = pid
		if err := syscall.Kill(f.first, syscall.SIGKILL); err != nil {
			return err
		}
		if err := f.openGate(); err != nil {
			return err
		}
		survivor, err := f.recovered(ctx, f.first)
		if err == nil && survivor == interim {
			err = fmt.Errorf("the supervisor tracks the interim generation %d", interim)
		}
		return err
	})
	f.requireBounded(rep, maxInFlight, true, "reset", "eof")
	if interim != 0 && !regexp.MustCompile(`msg=ready`).MatchString(f.logOf(interim)) {
		t.Errorf("the interim generation, pid %d, never said ready; its log:\n%s", interim, f.logOf(interim))
	}
	f.finish()
}

// 50 restarts within a second ("t" written to runsv's control fifo, as
// sv term does, 10ms apart) hit the instance
// while it hands over, while it drains, the next one while it takes over
// and before it is ready: each request joins the restart under way or
// waits for Ready, none stops an instance that someone depends on. Not
// one request fails, and once the storm is over one instance serves,
// the one the supervisor tracks, and no interim generation is left.
func testRestartStorm(t *testing.T) {
	f := startFaults(t, faultDrain)
	var took time.Duration
	rep := f.load(func(ctx context.Context) error {
		// Straight into runsv's control fifo, as sv does: 50 runs of sv
		// take seconds on a loaded machine, and the storm must fit in
		// one.
		fifo, err := os.OpenFile(filepath.Join(f.svc.Dir, "supervise", "control"), os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		defer fifo.Close()
		began := time.Now()
		for i := 0; i < 50; i++ {
			if _, err := fifo.Write([]byte("t")); err != nil {
				return fmt.Errorf("restart %d of the storm: %w", i+1, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		took = time.Since(began)
		// Settled: one process of the service runs, tracked and serving.
		ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
		defer cancel()
		var last string
		for {
			st, err := f.sup.Status()
			var procs []svtest.Process
			for _, p := range svtest.ProcessesUnder(f.svc.Root) {
				if p.PID != f.sup.PID() {
					procs = append(procs, p)
				}
			}
			pid, herr := f.servingPID(ctx)
			if err == nil && st.Up && len(procs) == 1 && procs[0].PID == st.PID && herr == nil && pid == st.PID && st.PID != f.first {
				return nil
			}
			last = fmt.Sprintf("runit: %v (%v); processes: %v; HTTP: pid %d (%v)", st, err, procs, pid, herr)
			select {
			case <-ctx.Done():
				return fmt.Errorf("after the storm, waiting for one process that serves: %w; last: %s", ctx.Err(), last)
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	f.requireZero(rep)
	out := f.output()
	t.Logf("50 restarts in %v: %d interim generations; %d take-overs asked through the control socket, %d done (the others' instances were killed by a restart signal before they could catch it); %d restart requests joined a handover under way, %d waited for Ready; %d processes served",
		took.Round(time.Millisecond), len(reInterimStarted.FindAllString(out, -1)),
		strings.Count(out, `msg="control socket: a new instance asks to take over"`), len(reTookOverCtl.FindAllString(out, -1)),
		strings.Count(out, `msg="restart: a handover is already under way`), strings.Count(out, `msg="restart: asked before this generation is ready`),
		len(rep.PIDs))
	f.finish()
}

// Slow clients whose requests outlast the old instance's drain deadline
// (1s here, requests of 5s) are cut at the deadline: their connections
// are closed, they see EOF, and the old instance logs how many it
// closed. The rest of the load, and the restart, lose nothing.
func testSlowClientsPastDrain(t *testing.T) {
	const (
		drain = time.Second
		slow  = 4
		delay = 5 * time.Second
	)
	f := startFaults(t, drain)
	type result struct {
		err error
		end time.Time
	}
	results := make(chan result, slow)
	var cut []time.Duration
	rep := f.load(func(ctx context.Context) error {
		// The slow requests reach the old instance, the only one.
		for i := 0; i < slow; i++ {
			conn, err := net.DialTimeout("tcp", f.svc.Addr, time.Second)
			if err != nil {
				return err
			}
			go func() {
				err := slowRequest(conn, delay)
				results <- result{err, time.Now()}
			}()
		}
		time.Sleep(200 * time.Millisecond) // for them to reach the handler
		began := time.Now()
		if err := f.sup.Term(ctx); err != nil {
			return err
		}
		for i := 0; i < slow; i++ {
			select {
			case r := <-results:
				if r.err == nil {
					return fmt.Errorf("a slow request of %v completed across a drain deadline of %v", delay, drain)
				}
				if !errors.Is(r.err, io.EOF) && !errors.Is(r.err, io.ErrUnexpectedEOF) && !errors.Is(r.err, syscall.ECONNRESET) {
					return fmt.Errorf("slow request: %w; want EOF or a reset at the drain deadline", r.err)
				}
				cut = append(cut, r.end.Sub(began).Round(time.Millisecond))
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		_, err := f.recovered(ctx, f.first)
		return err
	})
	f.requireZero(rep)
	t.Logf("%d slow requests cut %v after the restart signal (drain deadline %v, delay %v)", len(cut), cut, drain, delay)
	re := regexp.MustCompile(`msg="drained at the deadline"[^\n]*closed ` + strconv.Itoa(slow) + ` active`)
	if !re.MatchString(f.logOf(f.first)) {
		t.Errorf("the old instance, pid %d, does not report the %d connections it closed at the deadline; its log:\n%s", f.first, slow, f.logOf(f.first))
	}
	f.finish()
}

// slowRequest sends GET /?delay=d on conn and reads the answer; it
// returns nil for a whole 200 response.
func slowRequest(conn net.Conn, d time.Duration) error {
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(d + 10*time.Second))
	if _, err := fmt.Fprintf(conn, "GET /?delay=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", d); err != nil {
		return err
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(string(b), "HTTP/1.1 200") {
		if len(b) == 0 {
			return io.EOF
		}
		return fmt.Errorf("response %q", b)
	}
	return nil
}
