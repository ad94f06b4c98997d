package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/nspawn"
)

// failingServer stands in for a new build that cannot start: it says why
// on stderr and exits 3, before any handoff. The successor the library
// forks runs it, because the server re-execs the path it was started
// from (internal/exepath), and that path now names this script.
const failingServer = "#!/bin/sh\necho 'this build refuses to start: bad config' >&2\nexit 3\n"

// slowServer is a good build that takes slowStart to get going: it
// proves that systemctl reload waits for the successor, rather than
// returning before a handover that happens to be fast. It runs the real
// server under the name it was started by (exec -a), since that name is
// what the next upgrade re-execs.
const slowServer = "#!/bin/bash\nsleep 1\nexec -a \"$0\" " + nspawn.GuestDir + "/server.good \"$@\"\n"

// slowStart is slowServer's sleep.
const slowStart = time.Second

// testNotifyReload: Type=notify-reload (systemd 253 and later) with
// NotifyAccess=main, the unit documented for the library. systemctl reload
// sends SIGHUP itself and waits for READY=1, which the incumbent sends
// with MAINPID=<successor> only once the successor is ready: so when
// systemctl reload returns, MainPID must already be the new generation,
// and it must serve — no polling; a successor that takes a second to
// start makes the reload take at least that long. Every third reload
// runs a build that exits at once: the reload must come back (systemd has
// no way to be told it failed but the reload timeout), with the old
// generation still the main process and serving and the reason in
// StatusText. All of it under load that fails no request.
func testNotifyReload(t *testing.T, c *nspawn.Container) {
	s := newService(t, c, "baton-notify-reload")
	s.install(s.unit, fmt.Sprintf(`[Unit]
Description=baton demo server, upgraded in place by systemctl reload (Type=notify-reload)
StartLimitIntervalSec=0

[Service]
Type=notify-reload
ExecStart=%s -listen %s -pid-file %s -drain 10s -idle-grace 2s
TimeoutStartSec=20s
TimeoutStopSec=20s
`, s.guestServer(), s.addr(), s.guestPIDFile()))
	s.start()
	if p := s.show("StatusText"); !strings.HasPrefix(p["StatusText"], "serving, generation 1,") {
		t.Errorf("StatusText after start = %q; want serving, generation 1", p["StatusText"])
	}

	b := newBuilds(t, c)
	ok, refused, rep := b.reloadCycle(s, s.reloadSucceeds, s.reloadFails)
	for _, p := range rep.Problems() {
		t.Error(p)
	}
	t.Logf("%d reloads to a good build, each with MainPID following before systemctl reload returned; %d to a build that exits, each leaving the old generation serving", ok, refused)
	if len(rep.PIDs) != ok+1 {
		t.Errorf("requests were served by %d processes; want %d, the first and one per successful reload", len(rep.PIDs), ok+1)
	}
	s.checkSocket(false)
	s.waitOnlyMain()
	if p := s.show("NRestarts"); p["NRestarts"] != "0" {
		t.Errorf("NRestarts=%s after the reloads; want 0", p["NRestarts"])
	}
	s.stop()
	s.checkRefused()
}

// reloadSucceeds runs systemctl reload and checks, the moment it returns,
// that systemd's MainPID is a new process, a child of systemd, that
// answers HTTP and is in the pid file (without a probation the successor
// writes it before it tells the incumbent it is ready).
func (s *service) reloadSucceeds(ctx context.Context) error {
	old := s.main
	start := time.Now()
	if _, err := s.c.Systemctl("reload", s.unit); err != nil {
		return err
	}
	took := time.Since(start)
	pid, gen, err := s.checkSwitched(old)
	if err != nil {
		return err
	}
	if f := s.pidFromFile(); f != pid {
		return fmt.Errorf("right after the reload MainPID is %d, but the pid file says %d", pid, f)
	}
	s.t.Logf("systemctl reload returned after %v, MainPID %d → %d (gen %d)", took.Round(time.Millisecond), old, pid, gen)
	s.main = pid
	return nil
}

// checkSwitched checks, right after systemctl reload returned, that
// systemd's MainPID is a process other than old, a child of systemd,
// that answers HTTP and says so in StatusText. It returns that pid and
// the generation it answers as. The pid file is the caller's to check:
// after a probation it follows a moment later.
func (s *service) checkSwitched(old int) (pid, gen int, err error) {
	p, err := s.c.Show(s.unit, "MainPID", "ActiveState", "SubState", "StatusText")
	if err != nil {
		return 0, 0, err
	}
	pid, _ = strconv.Atoi(p["MainPID"])
	if pid == old || pid == 0 || p["ActiveState"] != "active" || p["SubState"] != "running" {
		return 0, 0, fmt.Errorf("systemctl reload returned with %v; want active, running and a MainPID other than %d: systemd must switch before the reload ends", p, old)
	}
	if want := fmt.Sprintf(", pid %d", pid); !strings.HasPrefix(p["StatusText"], "serving, generation ") || !strings.HasSuffix(p["StatusText"], want) {
		return 0, 0, fmt.Errorf("StatusText after the reload = %q; want the new generation's, ending %q", p["StatusText"], want)
	}
	gen, err = s.servedBy(pid)
	if err != nil {
		return 0, 0, fmt.Errorf("right after the reload MainPID is %d: %w", pid, err)
	}
	if ppid, err := s.parent(pid); err != nil || ppid != 1 {
		return 0, 0, fmt.Errorf("the new main process %d has parent %d (%v); want 1, systemd", pid, ppid, err)
	}
	return pid, gen, nil
}

// reloadFails runs systemctl reload with a build that exits installed and
// checks that it comes back successfully (READY=1 ends a reload as done:
// systemd 257 has no "reload failed" notification) with the old main
// process serving and the reason in StatusText.
func (s *service) reloadFails(ctx context.Context) error {
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
	if p["MainPID"] != strconv.Itoa(s.main) || p["ActiveState"] != "active" || p["SubState"] != "running" {
		return fmt.Errorf("after a failed upgrade: %v; want active, running, MainPID still %d", p, s.main)
	}
	st := p["StatusText"]
	// Not "exit status 3": the successor is systemd's child (the
	// library starts it with CLONE_PARENT, so that systemd can wait
	// for it once it is the main process), and so is its exit status.
	// Its stderr went to the journal.
	for _, want := range []string{"upgrade failed", "still serving", "failed before it was ready", "exited"} {
		if !strings.Contains(st, want) {
			return fmt.Errorf("StatusText after a failed upgrade = %q; want it to say %q", st, want)
		}
	}
	httpPID, _, err := s.get()
	if err != nil || httpPID != s.main {
		return fmt.Errorf("after a failed upgrade HTTP was answered by pid %d (%v); want the old main process %d", httpPID, err, s.main)
	}
	s.t.Logf("systemctl reload of a failing build: exit 0, MainPID still %d, StatusText %q", s.main, st)
	return nil
}

// builds are the versions of the server a scenario deploys, by renaming
// one over GuestDir/server as a deploy does (writing over a file that
// running generations execute fails with ETXTBSY): the real one, one that
// exits at once (failingServer), one that starts late (slowServer).
type builds struct {
	path, good, failing, slow string // on the host
}

func newBuilds(t *testing.T, c *nspawn.Container) *builds {
	t.Helper()
	b := &builds{
		path:    filepath.Join(c.Dir, "server"),
		good:    filepath.Join(c.Dir, "server.good"),
		failing: filepath.Join(c.Dir, "server.failing"),
		slow:    filepath.Join(c.Dir, "server.slow"),
	}
	if err := copyFile(b.path, b.good); err != nil {
		t.Fatal(err)
	}
	for f, text := range map[string]string{b.failing: failingServer, b.slow: slowServer} {
		if err := os.WriteFile(f, []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { b.deploy(b.good) }) // the other scenarios need the real one
	return b
}

// deploy makes from the server the next generation runs.
func (b *builds) deploy(from string) error {
	tmp := b.path + ".new"
	if err := copyFile(from, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, b.path)
}

// reloadCycle runs the load with loadUpgrades reloads, each of the build
// its number says: the real one, the slow one (whose reload must take
// at least slowStart: it waits for the successor), the failing one. The
// reload checks are the scenario's; a failing reload that checks out
// counts as a good upgrade for loadgen. It returns how many reloads
// replaced the generation and how many were refused.
func (b *builds) reloadCycle(s *service, succeeds, fails func(context.Context) error) (ok, refused int, rep *loadgen.Report) {
	n := 0
	rep = s.load(loadgen.Config{Upgrade: func(ctx context.Context) error {
		n++
		switch n % 3 {
		case 0:
			if err := b.deploy(b.failing); err != nil {
				return err
			}
			defer b.deploy(b.good)
			if err := fails(ctx); err != nil {
				return err
			}
			refused++
		case 2:
			if err := b.deploy(b.slow); err != nil {
				return err
			}
			defer b.deploy(b.good)
			start := time.Now()
			if err := succeeds(ctx); err != nil {
				return err
			}
			if took := time.Since(start); took < slowStart {
				return fmt.Errorf("systemctl reload to a successor that sleeps %v before it starts returned after %v: it did not wait for READY=1", slowStart, took)
			}
			ok++
		default:
			if err := succeeds(ctx); err != nil {
				return err
			}
			ok++
		}
		return nil
	}})
	return ok, refused, rep
}

// servedByTimeout bounds servedBy.
const servedByTimeout = 5 * time.Second

// servedBy returns once a request on a new connection is answered by pid,
// with the generation it says it is. The generation it replaced may still
// accept for a moment after the reload returned (the successor is ready,
// the old one is told to drain right after: both accept from the one
// socket until then), so an answer from another pid is not a failure; no
// answer at all is, and so is no answer from pid within servedByTimeout.
// A poll: when the old one stops accepting is its business, not an event
// we can wait for.
func (s *service) servedBy(pid int) (gen int, err error) {
	deadline := time.Now().Add(servedByTimeout)
	others := 0
	for {
		got, g, err := s.get()
		if err != nil {
			return 0, fmt.Errorf("GET: %w", err)
		}
		if got == pid {
			if others > 0 {
				s.t.Logf("%d answers from pid %d before the first from %d", others, got, pid)
			}
			return g, nil
		}
		others++
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("%d answers in %v, none from pid %d; the last from %d", others, servedByTimeout, pid, got)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
