package systemd

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/nspawn"
)

// probationWindow is the server's -probation here: long enough for the
// test to find the successor, see both generations answer and kill it,
// all inside the window, on a shared 2-core machine under load.
const probationWindow = 3 * time.Second

// probationReloads is how many reloads each half of the scenario runs.
const probationReloads = 2

// testProbation: Type=notify-reload with the server on probation
// (Options.Probation). After systemctl reload the incumbent keeps serving
// beside its ready successor for the window and only then sends
// MAINPID=<successor> and READY=1, which end the reload. So:
//
//   - a good build: until systemctl reload returns, MainPID and the pid
//     file still name the old generation, and both the old generation and
//     the successor (a child of systemd in the unit's cgroup) answer HTTP;
//     the reload returns no sooner than the window after the incumbent
//     logged its successor ready; then MainPID is the successor. Under
//     load, nothing fails.
//   - a successor killed (kill -9) inside the window: the reload returns,
//     MainPID is still the old generation, which serves, and StatusText
//     says the successor failed on probation and how long after ready.
//     Under load no connection is refused; what the killed successor had
//     accepted dies with it (bounded below).
//
// Then stop: Result=success, nothing left in the unit.
func testProbation(t *testing.T, c *nspawn.Container) {
	s := newService(t, c, "baton-probation")
	s.install(s.unit, fmt.Sprintf(`[Unit]
Description=baton demo server, upgraded by systemctl reload with a probation
StartLimitIntervalSec=0

[Service]
Type=notify-reload
ExecStart=%s -listen %s -pid-file %s -drain 10s -idle-grace 2s -probation %v
TimeoutStartSec=20s
TimeoutStopSec=20s
`, s.guestServer(), s.addr(), s.guestPIDFile(), probationWindow))
	s.start()
	p := &probation{s: s}

	t.Run("good", func(t *testing.T) {
		defer s.reportTo(t)()
		rep := s.load(loadgen.Config{Upgrades: probationReloads, Upgrade: p.reloadPasses})
		for _, pr := range rep.Problems() {
			t.Error(pr)
		}
		if len(rep.PIDs) != probationReloads+1 {
			t.Errorf("requests were served by %d processes; want %d, the first and one per reload", len(rep.PIDs), probationReloads+1)
		}
	})

	t.Run("killed", func(t *testing.T) {
		defer s.reportTo(t)()
		rep := s.load(loadgen.Config{Upgrades: probationReloads, Upgrade: p.reloadKilled})
		if rep.Upgrades.OK != probationReloads {
			t.Errorf("%d of %d reloads with the successor killed on probation checked out: %v", rep.Upgrades.OK, probationReloads, rep.Upgrades.Errors)
		}
		// The slow request starts before the reload, on the only
		// generation then serving: the incumbent, which lives on.
		if rep.Slow == nil || rep.Slow.OK != probationReloads {
			t.Errorf("slow requests: %+v; want all %d completed", rep.Slow, probationReloads)
		}
		var served []string
		for _, pc := range rep.PIDs {
			served = append(served, fmt.Sprintf("pid %d: %d", pc.PID, pc.Requests))
		}
		t.Logf("measured: requests served (the incumbent, then the successors killed on probation): %s", strings.Join(served, ", "))
		for _, m := range rep.Modes {
			f := m.Failures
			t.Logf("measured: %s clients, across %d × kill -9 of a successor on probation: %d of %d requests failed (%s)",
				m.Mode, rep.Upgrades.OK, f.Total(), m.Requests, classes(f))
			// The listening socket never stopped being accepted from by
			// the incumbent: nothing is refused, nothing times out.
			// What dies is what the successor had accepted: a request
			// it had not read yet is reset (the kernel answers unread
			// data with RST), one it read but had not answered ends in
			// eof, and a keep-alive connection idle in it fails the next
			// request sent on it (clients never retry). Each client has
			// one connection at a time and dials again only after the
			// failure, by then into the incumbent (the successor is
			// dead): at most one failure per client per kill.
			if n := f.Refused + f.Timeout + f.Non200 + f.Other; n > 0 {
				t.Errorf("%s clients: %d requests failed other than reset or eof (%s); want none: only connections in the killed successor may fail", m.Mode, n, classes(f))
			}
			if bound := int64(m.Clients * probationReloads); f.Reset+f.EOF > bound {
				t.Errorf("%s clients: %d requests reset or cut short across %d kills; want at most %d, one per client per kill", m.Mode, f.Reset+f.EOF, probationReloads, bound)
			}
		}
	})

	t.Logf("measured: from the incumbent's \"successor ready, on probation\" to systemctl reload returning: %v (-probation %v)", p.windows, probationWindow)
	s.checkSocket(false)
	s.waitOnlyMain()
	if pr := s.show("NRestarts"); pr["NRestarts"] != "0" {
		t.Errorf("NRestarts=%s after the reloads; want 0", pr["NRestarts"])
	}
	s.stop()
	s.checkRefused()
}

// probation follows the reloads of one unit on probation.
type probation struct {
	s       *service
	acks    int             // incumbents' "successor ready, on probation" lines seen so far
	windows []time.Duration // for each good reload: from that line to systemctl reload returning
}

// reloadPasses is a reload to a good build: it must wait out the window
// with the old generation still the main process, then switch.
func (p *probation) reloadPasses(ctx context.Context) error {
	s := p.s
	old := s.main
	r := s.startReload()
	defer r.wait() // no goroutine outlives the reload
	succ, ready, err := p.waitAck(r)
	if err != nil {
		return err
	}
	if err := p.checkWindow(r, old, succ); err != nil {
		return err
	}
	if err := r.wait(); err != nil {
		return err
	}
	// ready is the incumbent's clock (the container shares the host's
	// realtime clock) when it logged the ack, just after it started
	// the window's timer; the line's time is cut to the millisecond,
	// which only makes took longer. READY=1 goes out when the timer
	// fires, and systemctl returns after that.
	took := r.at.Sub(ready)
	p.windows = append(p.windows, took.Round(time.Millisecond))
	if took < probationWindow {
		return fmt.Errorf("systemctl reload returned %v after the successor %d was ready; want no sooner than the probation, %v", took, succ, probationWindow)
	}
	pid, gen, err := s.checkSwitched(old)
	if err != nil {
		return err
	}
	if pid != succ {
		return fmt.Errorf("after the probation MainPID is %d; want the successor on probation, %d", pid, succ)
	}
	lag, err := s.waitPIDFile(pid)
	if err != nil {
		return err
	}
	s.t.Logf("systemctl reload returned %v after successor %d was ready; MainPID %d → %d (gen %d); the pid file followed within %v",
		took.Round(time.Millisecond), succ, old, pid, gen, lag.Round(time.Millisecond))
	s.main = pid
	return nil
}

// reloadKilled is a reload whose successor is killed (SIGKILL) inside
// its window: the reload must end with the old generation still the
// main process, serving, and the failure in StatusText.
func (p *probation) reloadKilled(ctx context.Context) error {
	s := p.s
	old := s.main
	r := s.startReload()
	defer r.wait()
	succ, ready, err := p.waitAck(r)
	if err != nil {
		return err
	}
	if err := p.checkWindow(r, old, succ); err != nil {
		return err
	}
	// Kill it a third into the window, once it has served the load for
	// a while: what it has in flight then is what a crash would cost.
	select {
	case <-time.After(time.Until(ready.Add(probationWindow / 3))):
	case <-r.done:
	}
	if r.returned() {
		return fmt.Errorf("the probation of successor %d passed before the test could kill it; make probationWindow longer", succ)
	}
	killed := time.Now()
	if _, err := s.c.Run("/bin/sh", "-c", "kill -9 "+strconv.Itoa(succ)); err != nil {
		return err
	}
	var exit *exec.ExitError
	if err := r.wait(); errors.As(err, &exit) {
		return fmt.Errorf("systemctl reload with the successor killed on probation: %v; want exit status 0 (READY=1 ends the reload)", err)
	} else if err != nil {
		return err
	}
	pr, err := s.c.Show(s.unit, "MainPID", "ActiveState", "SubState", "StatusText")
	if err != nil {
		return err
	}
	if pr["MainPID"] != strconv.Itoa(old) || pr["ActiveState"] != "active" || pr["SubState"] != "running" {
		return fmt.Errorf("after the successor was killed on probation: %v; want active, running, MainPID still %d", pr, old)
	}
	st := pr["StatusText"]
	for _, want := range []string{
		"upgrade failed", "still serving",
		fmt.Sprintf("(pid %d) failed on probation", succ),
		"after ready, within its probation of " + probationWindow.String(),
	} {
		if !strings.Contains(st, want) {
			return fmt.Errorf("StatusText after the successor was killed on probation = %q; want it to say %q", st, want)
		}
	}
	if got, _, err := s.get(); err != nil || got != old {
		return fmt.Errorf("after the successor was killed on probation HTTP was answered by pid %d (%v); want the old main process %d", got, err, old)
	}
	if f := s.pidFromFile(); f != old {
		return fmt.Errorf("after the successor was killed on probation the pid file says %d; want still %d", f, old)
	}
	s.t.Logf("successor %d killed %v after ready: systemctl reload exit 0, MainPID still %d, StatusText %q",
		succ, killed.Sub(ready).Round(time.Millisecond), old, st)
	return nil
}

// checkWindow checks, while the reload r has not returned, what the
// window looks like: the successor succ is a child of systemd in the
// unit's cgroup, not its main process; MainPID and the pid file still
// name old; both old and succ answer HTTP on new connections. Anything
// seen after r returned proves nothing about the window, and is an
// error.
func (p *probation) checkWindow(r *reloadCall, old, succ int) error {
	s := p.s
	late := func(what string) error {
		return fmt.Errorf("systemctl reload returned (%v) before %s: the window of successor %d was over", r.err, what, succ)
	}
	ppid, err := s.parent(succ)
	if err != nil || ppid != 1 {
		return fmt.Errorf("successor %d on probation has parent %d (%v); want 1, systemd", succ, ppid, err)
	}
	pids, err := s.c.UnitPIDs(s.unit)
	if err != nil {
		return err
	}
	if !slices.Contains(pids, succ) {
		return fmt.Errorf("successor %d on probation is not in %s, which holds %v", succ, s.unit, pids)
	}
	main, err := s.c.MainPID(s.unit)
	switch {
	case err != nil:
		return err
	case r.returned():
		return late("MainPID was read")
	case main != old:
		return fmt.Errorf("during the probation of %d MainPID is %d; want still %d", succ, main, old)
	}
	if f := s.pidFromFile(); r.returned() {
		return late("the pid file was read")
	} else if f != old {
		return fmt.Errorf("during the probation of %d the pid file says %d; want still %d", succ, f, old)
	}
	// Both generations accept from the one socket: which one takes a
	// connection is the kernel's choice, so ask until each has answered.
	seen := map[int]int{}
	for seen[old] == 0 || seen[succ] == 0 {
		got, _, err := s.get()
		if r.returned() {
			return late(fmt.Sprintf("both generations answered (answers by pid: %v)", seen))
		}
		if err != nil {
			return fmt.Errorf("GET during the probation of %d: %w", succ, err)
		}
		if got != old && got != succ {
			return fmt.Errorf("during the probation of %d pid %d answered; want %d or %d", succ, got, old, succ)
		}
		seen[got]++
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Logf("during the probation: MainPID and the pid file %d; successor %d a child of systemd in the unit; answers by pid %v", old, succ, seen)
	return nil
}

// ackLine is the incumbent's log line when its successor is ready and
// the window starts: its time and the successor's pid.
var ackLine = regexp.MustCompile(`^time=(\S+) .*msg="successor ready, on probation: both generations serve".* successor=(\d+)`)

// waitAck waits for the next ackLine in the unit's journal and returns
// the successor's pid and the line's time. A poll: the journal is
// journald's, and tells nobody when a line arrives. The reload r must not
// return first: the window is after this line.
func (p *probation) waitAck(r *reloadCall) (succ int, at time.Time, err error) {
	s := p.s
	deadline := time.Now().Add(handoverTimeout)
	for {
		returned := r.returned()
		out, err := s.c.Run("journalctl", "--no-pager", "--quiet", "-o", "cat", "-u", s.unit)
		if err != nil {
			return 0, time.Time{}, err
		}
		var acks [][]string
		for _, l := range strings.Split(out, "\n") {
			if m := ackLine.FindStringSubmatch(l); m != nil {
				acks = append(acks, m)
			}
		}
		if len(acks) > p.acks {
			m := acks[p.acks]
			p.acks++
			succ, _ := strconv.Atoi(m[2])
			at, err := time.Parse(time.RFC3339, m[1])
			if err != nil || succ == 0 {
				return 0, time.Time{}, fmt.Errorf("the incumbent's line %q: no time or successor (%v)", m[0], err)
			}
			if returned {
				return 0, time.Time{}, fmt.Errorf("systemctl reload returned (%v) before the incumbent logged successor %d ready on probation", r.err, succ)
			}
			return succ, at, nil
		}
		switch {
		case returned:
			return 0, time.Time{}, fmt.Errorf("systemctl reload returned (%v) and the incumbent logged no successor ready on probation", r.err)
		case time.Now().After(deadline):
			return 0, time.Time{}, fmt.Errorf("no successor ready on probation in the journal of %s within %v of systemctl reload", s.unit, handoverTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitPIDFile waits until the pid file names pid and says how long that
// took. After a probation the successor writes it when the incumbent
// tells it the window passed, which the incumbent does after MAINPID=
// and READY=1: it may still name the old generation for a moment after
// systemctl reload returned. A poll: the file tells nobody it changed.
func (s *service) waitPIDFile(pid int) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(servedByTimeout)
	for {
		f := s.pidFromFile()
		if f == pid {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the pid file says %d %v after the reload; want %d, MainPID", f, servedByTimeout, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// reloadCall is a systemctl reload running in the background.
type reloadCall struct {
	done chan struct{} // closed when it returned; err and at are set then
	err  error
	at   time.Time
}

func (s *service) startReload() *reloadCall {
	r := &reloadCall{done: make(chan struct{})}
	go func() {
		_, r.err = s.c.Systemctl("reload", s.unit)
		r.at = time.Now()
		close(r.done)
	}()
	return r
}

// returned reports whether the reload has returned.
func (r *reloadCall) returned() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// wait waits for the reload to return (nspawn.CommandTimeout bounds it)
// and returns its error.
func (r *reloadCall) wait() error {
	<-r.done
	return r.err
}
