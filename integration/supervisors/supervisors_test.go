//go:build linux

package supervisors

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/svtest"
)

const (
	// drain is the server's -drain: how long a stopping generation may
	// take over its requests, and so how long a plain stop may take.
	drain = 5 * time.Second

	restarts = 10

	// startTimeout bounds the first start: the supervisor runs ./run at
	// once and the server is ready within milliseconds.
	startTimeout = 15 * time.Second

	// restartTimeout bounds one restart under load: the signal, the
	// handover to the interim copy, the supervisor's pause of up to a
	// second before it starts ./run again, the takeover.
	restartTimeout = 15 * time.Second

	// runTimeout bounds the load run: warmup, then 10 restarts of about
	// a second and a half each with their settle, 20s in all, with room
	// to spare; loadgen stops by itself when it expires. With the other
	// bounds it keeps the four cases within go test's default 10m
	// timeout even if every one of them hangs.
	runTimeout = 60 * time.Second

	// minRequests is the least load that means anything: 32 clients
	// over more than ten seconds make tens of thousands of requests.
	minRequests = 1000
)

// notificationFD is the descriptor s6-supervise gives the server for
// readiness in the s6-notify case, as in examples/s6/demo.
const notificationFD = 3

// Each supervisor restarts the server 10 times under load without one
// failed request, then stops it for good. s6 runs twice: without a
// notification-fd, restarted with s6-svc -r like the others, and with
// one, restarted with s6-svc -r -wR, which must return only once the new
// instance has said it is ready.
func TestSupervisors(t *testing.T) {
	tests := []struct {
		name    string
		kind    svtest.Kind
		notify  bool
		restart restartFunc
	}{
		{"daemontools", svtest.Daemontools, false, plainRestart},
		{"runit", svtest.Runit, false, plainRestart},
		{"s6", svtest.S6, false, plainRestart},
		{"s6-notify", svtest.S6, true, readyRestart},
	}
	// In sequence: each run loads both cores of a small machine.
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sup, first := startService(t, tt.kind, tt.notify)
			restartUnderLoad(t, sup, first, tt.restart, true)
			stop(t, sup, serverBin)
		})
	}
}

// startService runs the demo server under a supervisor of kind, with the
// run script of examples/<kind>/demo (and its notification-fd, if notify),
// and returns once it serves, with its pid.
func startService(t *testing.T, kind svtest.Kind, notify bool) (*svtest.Supervisor, int) {
	t.Helper()
	svtest.Require(t, kind)
	svc := svtest.NewService(t)
	if err := svc.WriteRun(serverBin,
		"-listen", svc.Addr,
		"-pid-file", svc.PIDFile,
		"-control", svc.Control,
		"-drain", drain.String(),
		// A keep-alive client silent for the idle grace is closed by the
		// drain; this -race test process, on a shared machine, can stall
		// its clients for most of a second: keep the grace above that.
		"-idle-grace", "2s",
	); err != nil {
		t.Fatal(err)
	}
	if notify {
		if err := svc.WriteNotificationFD(notificationFD); err != nil {
			t.Fatal(err)
		}
	}
	sup := svtest.Start(t, kind, svc)
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	first, err := sup.WaitServing(ctx, 0)
	if err != nil {
		t.Fatalf("the server never served: %v", err)
	}
	return sup, first
}

// A restartFunc restarts the service, whose process is old, through its
// supervisor and returns the pid of the new process once it serves.
type restartFunc func(ctx context.Context, sup *svtest.Supervisor, old int) (int, error)

// plainRestart is the operator's restart (svc -t, sv restart, s6-svc -r), then
// a wait until the supervisor tracks a new pid, up and wanted up, which
// the pid file and the HTTP answers name.
func plainRestart(ctx context.Context, sup *svtest.Supervisor, old int) (int, error) {
	if err := sup.Restart(ctx); err != nil {
		return 0, err
	}
	return sup.WaitServing(ctx, old)
}

// readyRestart is plainRestart through s6-svc -r -wR, for a service with a
// notification-fd: when s6-svc returns, s6 must already report a new
// process, up and ready, which can only be the new instance saying so
// after its takeover.
func readyRestart(ctx context.Context, sup *svtest.Supervisor, old int) (int, error) {
	// -T: s6-svc's own bound, in milliseconds, within ctx's.
	limit := restartTimeout / 2
	argv := []string{"s6-svc", "-r", "-wR", "-T", strconv.FormatInt(limit.Milliseconds(), 10), sup.Service.Dir}
	if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
		return 0, fmt.Errorf("%s: %w; output: %q", strings.Join(argv, " "), err, out)
	}
	st, err := sup.Status()
	if err != nil {
		return 0, err
	}
	if !st.Up || !st.Ready || st.PID == old {
		return 0, fmt.Errorf("s6-svc -r -wR returned, and s6 says %v (old pid %d); want a new pid, up and ready", st, old)
	}
	pid, err := sup.WaitServing(ctx, old)
	if err == nil && pid != st.PID {
		err = fmt.Errorf("s6 said pid %d was ready, then tracked pid %d", st.PID, pid)
	}
	return pid, err
}

// restartUnderLoad restarts the service through its supervisor while
// loadgen's clients send requests, and fails the test for any request
// that failed and any restart that did not end with the supervisor
// tracking a new process that serves.
//
// With newPIDs every restart must leave a new process tracked; without,
// the same one (an upgrade in place).
func restartUnderLoad(t *testing.T, sup *svtest.Supervisor, first int, restart restartFunc, newPIDs bool) {
	var mu sync.Mutex // Upgrade calls come one at a time; mu is for the reads after Run
	pids := []int{first}
	upgrade := func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		ctx, cancel := context.WithTimeout(ctx, restartTimeout)
		defer cancel()
		pid, err := restart(ctx, sup, pids[len(pids)-1])
		if err != nil {
			return err
		}
		pids = append(pids, pid)
		return nil
	}

	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	rep, err := loadgen.Run(ctx, loadgen.Config{
		URL:       sup.Service.URL(),
		Clients:   16,
		Modes:     []loadgen.Mode{loadgen.Fresh, loadgen.KeepAlive},
		Upgrades:  restarts,
		Upgrade:   upgrade,
		Settle:    loadgen.DefaultSettle,
		SlowDelay: 300 * time.Millisecond,
	})
	if err != nil {
		t.Fatalf("loadgen.Run: %v", err)
	}
	var b strings.Builder
	rep.WriteText(&b)
	t.Logf("%s restarts under load:\n%s", t.Name(), b.String())

	for _, p := range rep.Problems() {
		t.Error(p) // an upgrade succeeds when the supervisor tracks a new process that serves
	}
	if rep.Requests < minRequests {
		t.Errorf("only %d requests were made; want at least %d for the run to mean anything", rep.Requests, minRequests)
	}
	mu.Lock()
	defer mu.Unlock()
	seen := map[int]bool{}
	for _, pid := range pids {
		if newPIDs && seen[pid] {
			t.Errorf("%s tracked pid %d twice across the restarts (pids %v); want a new process each time", sup.Kind, pid, pids)
		}
		if !newPIDs && pid != first {
			t.Errorf("%s tracked pids %v across the upgrades in place; want %d throughout", sup.Kind, pids, first)
			break
		}
		seen[pid] = true
	}
}

// SIGHUP through each supervisor (svc -h, sv hup, s6-svc -h) upgrades the
// server in place, 10 times under load, without one failed request: the
// pid the supervisor tracks never changes, and each time a new generation
// — the program re-executed in that process — answers.
func TestSupervisorsUpgradeInPlace(t *testing.T) {
	for _, kind := range svtest.Kinds() {
		t.Run(string(kind), func(t *testing.T) {
			sup, first := startService(t, kind, false)
			restartUnderLoad(t, sup, first, upgradeInPlace, false)
			stop(t, sup, serverBin)
		})
	}
}

// upgradeInPlace sends SIGHUP through the supervisor and waits until a
// newer generation answers from the very process the supervisor tracks,
// and the pid file names it.
func upgradeInPlace(ctx context.Context, sup *svtest.Supervisor, pid int) (int, error) {
	probe, cancel := context.WithTimeout(ctx, time.Second)
	_, gen, err := sup.Service.Serving(probe)
	cancel()
	if err != nil {
		return 0, err
	}
	if err := sup.Hangup(ctx); err != nil {
		return 0, err
	}
	var last string
	for {
		st, err := sup.Status()
		filePID, ferr := sup.Service.PIDFromFile()
		probe, cancel := context.WithTimeout(ctx, time.Second)
		httpPID, httpGen, herr := sup.Service.Serving(probe)
		cancel()
		if err == nil && ferr == nil && herr == nil && st.Up && st.PID == pid && filePID == pid && httpPID == pid && httpGen > gen {
			return pid, nil
		}
		last = fmt.Sprintf("status %v (%v), pid file %d (%v), HTTP pid %d gen %d (%v)", st, err, filePID, ferr, httpPID, httpGen, herr)
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("waiting for pid %d to serve a generation after %d: %w; last: %s", pid, gen, ctx.Err(), last)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// stop brings the service down for good and fails the test unless, within
// the drain deadline, the supervisor says down, no process runs the server
// binary bin, and the port refuses connections.
func stop(t *testing.T, sup *svtest.Supervisor, bin string) {
	deadline := time.Now().Add(drain + time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := sup.Stop(ctx); err != nil {
		t.Errorf("Stop: %v", err)
	}
	for {
		st, err := sup.Status()
		left := svtest.ProcessesOf(bin)
		refused := sup.Service.Refused()
		if err == nil && !st.Up && !st.WantUp && len(left) == 0 && refused == nil {
			return
		}
		select {
		case <-ctx.Done():
			var why []string
			switch {
			case err != nil:
				why = append(why, "status file: "+err.Error())
			case st.Up || st.WantUp:
				why = append(why, fmt.Sprintf("%s says %v", sup.Kind, st))
			}
			for _, p := range left {
				why = append(why, fmt.Sprintf("server still running: %v", p))
			}
			if refused != nil {
				why = append(why, refused.Error())
			}
			t.Errorf("%s stop: not done within the drain deadline (%v):\n\t%s", sup.Kind, drain+time.Second, strings.Join(why, "\n\t"))
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
}
