package systemd

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/nspawn"
)

// testMasterNotifyReload: "baton run" as the main process of a
// Type=notify-reload unit, the demo server as its worker. The master is
// the stable main process: on systemctl reload (SIGHUP from systemd) it
// sends RELOADING=1, starts a new worker, and sends READY=1 once that one
// is ready and the old one told to drain, or once it failed. So when
// systemctl reload returns, MainPID is still the master and HTTP is
// answered by a new worker; after a build that exits, by the same worker,
// with the reason in StatusText. The same reload cycle, under the same
// load, as testNotifyReload.
func testMasterNotifyReload(t *testing.T, c *nspawn.Container) {
	if err := copyFile(baton(t), c.Dir+"/baton"); err != nil {
		t.Fatalf("copying baton into the container's directory: %v", err)
	}
	s := newService(t, c, "baton-master")
	s.install(s.unit, fmt.Sprintf(`[Unit]
Description=baton run with the demo server as its worker (Type=notify-reload)
StartLimitIntervalSec=0

[Service]
Type=notify-reload
ExecStart=%s/baton run --name baton-master --listen tcp://%s --drain-timeout 10s -- %s -listen %s -drain 10s -idle-grace 2s
TimeoutStartSec=20s
TimeoutStopSec=20s
`, nspawn.GuestDir, s.addr(), s.guestServer(), s.addr()))
	s.systemctl("start", s.unit)
	// READY=1 came once the first worker was ready: it serves now.
	master, err := s.c.MainPID(s.unit)
	if err != nil {
		t.Fatal(err)
	}
	s.main = master
	worker, _, err := s.get()
	if err != nil || worker == master {
		t.Fatalf("after systemctl start, HTTP answered by pid %d (%v); want a worker of the master %d", worker, err, master)
	}
	if s.inode, err = listeningInode(s.port); err != nil {
		t.Fatalf("after start: %v", err)
	}

	succeeds := func(ctx context.Context) error {
		start := time.Now()
		if _, err := s.c.Systemctl("reload", s.unit); err != nil {
			return err
		}
		took := time.Since(start)
		p, err := s.c.Show(s.unit, "MainPID", "ActiveState", "SubState", "StatusText")
		if err != nil {
			return err
		}
		if p["MainPID"] != strconv.Itoa(master) || p["ActiveState"] != "active" || p["SubState"] != "running" {
			return fmt.Errorf("systemctl reload returned with %v; want active, running, MainPID still the master %d", p, master)
		}
		// The new worker is whoever is not the old one: the master
		// tells the old one to drain only after READY=1.
		pid, err := s.servedByOtherThan(worker)
		if err != nil || pid == master {
			return fmt.Errorf("after systemctl reload, HTTP answered by pid %d (%v); want a new worker (the old one is %d, the master %d)", pid, err, worker, master)
		}
		if !strings.HasPrefix(p["StatusText"], "serving") {
			return fmt.Errorf("StatusText after the reload = %q; want serving…", p["StatusText"])
		}
		s.t.Logf("systemctl reload returned after %v, worker %d → %d; %q", took.Round(time.Millisecond), worker, pid, p["StatusText"])
		worker = pid
		return nil
	}
	fails := func(ctx context.Context) error {
		out, err := s.c.Systemctl("reload", s.unit)
		var exit *exec.ExitError
		switch {
		case errors.As(err, &exit):
			return fmt.Errorf("systemctl reload of a build that exits: %v; want exit status 0 (READY=1 ends the reload), output %q", err, out)
		case err != nil:
			return err
		}
		p, err := s.c.Show(s.unit, "MainPID", "ActiveState", "SubState", "StatusText")
		if err != nil {
			return err
		}
		if p["MainPID"] != strconv.Itoa(master) || p["ActiveState"] != "active" || p["SubState"] != "running" {
			return fmt.Errorf("after a failed reload: %v; want active, running, MainPID still the master %d", p, master)
		}
		// The master is the worker's parent: unlike a self-upgrading
		// server under systemd, it knows how its new worker ended.
		st := p["StatusText"]
		for _, want := range []string{"reload failed", "still serving", "exit status 3"} {
			if !strings.Contains(st, want) {
				return fmt.Errorf("StatusText after a failed reload = %q; want it to say %q", st, want)
			}
		}
		pid, _, err := s.get()
		if err != nil || pid != worker {
			return fmt.Errorf("after a failed reload HTTP was answered by pid %d (%v); want the old worker %d", pid, err, worker)
		}
		s.t.Logf("systemctl reload of a failing build: exit 0, worker still %d, StatusText %q", worker, st)
		return nil
	}

	b := newBuilds(t, c)
	ok, refused, rep := b.reloadCycle(s, succeeds, fails)
	for _, p := range rep.Problems() {
		t.Error(p)
	}
	t.Logf("%d reloads to a good build, each with a new worker serving when systemctl reload returned; %d to a build that exits, each leaving the old worker serving", ok, refused)
	if len(rep.PIDs) != ok+1 {
		t.Errorf("requests were served by %d processes; want %d, the first worker and one per successful reload", len(rep.PIDs), ok+1)
	}
	s.checkSocket(false)
	s.waitOnly(master, worker)
	if p := s.show("NRestarts"); p["NRestarts"] != "0" {
		t.Errorf("NRestarts=%s after the reloads; want 0", p["NRestarts"])
	}
	s.stop()
	s.checkRefused()
}

// waitOnly waits until pids, and nothing else, run in the unit: every
// replaced worker has drained and exited.
func (s *service) waitOnly(pids ...int) {
	s.t.Helper()
	slices.Sort(pids)
	deadline := time.Now().Add(exitTimeout)
	for {
		got, err := s.c.UnitPIDs(s.unit)
		if err != nil {
			s.t.Fatalf("%v", err)
		}
		slices.Sort(got)
		if slices.Equal(got, pids) {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("processes in %s %v after %v; want only %v: replaced generations did not exit", s.unit, got, exitTimeout, pids)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// servedByOtherThan returns the first pid other than old to answer a
// request on a new connection, within servedByTimeout; see servedBy for
// why this polls.
func (s *service) servedByOtherThan(old int) (int, error) {
	deadline := time.Now().Add(servedByTimeout)
	for n := 1; ; n++ {
		got, _, err := s.get()
		if err != nil {
			return 0, fmt.Errorf("GET: %w", err)
		}
		if got != old {
			if n > 1 {
				s.t.Logf("%d answers from the old worker %d before the first from %d", n-1, old, got)
			}
			return got, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d answers in %v, all from the old worker %d", n, servedByTimeout, old)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
