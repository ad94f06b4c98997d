package systemd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/nspawn"
	"github.com/batonhq/baton/internal/procfs"
)

// Bounds on the waits of these tests.
const (
	// handoverTimeout bounds one upgrade: from systemctl reload or restart
	// to systemd, the pid file and HTTP all naming the new process.
	handoverTimeout = 20 * time.Second
	// loadTimeout bounds one loadgen run; a run takes about 10s.
	loadTimeout = 90 * time.Second
	// exitTimeout bounds how long old generations may take to drain and
	// exit once replaced (the server's -drain is 10s).
	exitTimeout = 15 * time.Second
)

// Every unit runs the server with -idle-grace 2s: while draining it closes a
// keep-alive connection whose client has been silent that long, and the
// clients in this -race test process, on a shared machine, can stall for
// most of a second — longer than the 500 ms default.

// The load of every run: what the brief of these tests asks for.
var loadModes = []loadgen.Mode{loadgen.Fresh, loadgen.KeepAlive}

const (
	loadClients   = 16
	loadSlowDelay = 300 * time.Millisecond
	loadUpgrades  = 10
)

// TestSystemd runs the scenarios in a container, one after another, each
// with units and a port of its own: booting is cheap, but once is cheaper.
//
// It does so on systemd 252 (Debian bookworm) twice: in the cgroup layout
// nspawn picks for this host, and in the unified one. The difference
// matters to a service that changes its main process: systemd learns that
// the processes of a unit have gone from cgroup2 events on a unified
// system, and only from SIGCHLD otherwise. Then on systemd 257 (Debian
// trixie), in the unified layout only — 256 deprecated the v1 hierarchy
// and real 257 systems run the unified one — with Type=notify-reload
// first, which 252 does not have, for the demo server and for baton run,
// then the Type=notify scenarios whose main process changes.
//
// The three run one after another, not in parallel: each puts the load
// of its clients on the machine, and on 2 cores two at once would measure
// the machine. TestNotifier, which puts none, runs beside them.
func TestSystemd(t *testing.T) {
	t.Parallel()
	bin := server(t)
	hostLayout := ""
	for _, tc := range []struct {
		name    string
		release nspawn.Release
		unified bool
	}{
		{"252/host-cgroups", nspawn.Bookworm, false},
		{"252/unified-cgroups", nspawn.Bookworm, true},
		{"257/unified-cgroups", nspawn.Trixie, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.release == nspawn.Bookworm && tc.unified && hostLayout == "unified" {
				t.Skipf("the host's layout is already unified: covered by 252/host-cgroups")
			}
			c := nspawn.Boot(t, nspawn.Options{Release: tc.release, Unified: tc.unified})
			if tc.release == nspawn.Bookworm && !tc.unified {
				hostLayout = c.Cgroups
			}
			if err := copyFile(bin, filepath.Join(c.Dir, "server")); err != nil {
				t.Fatalf("copying the server into the container's directory: %v", err)
			}
			version, _ := c.Systemctl("--version")
			t.Logf("%s, %s cgroups", strings.SplitN(version, "\n", 2)[0], c.Cgroups)
			if want := "systemd " + strings.SplitN(tc.name, "/", 2)[0] + " "; !strings.HasPrefix(version, want) {
				t.Fatalf("systemctl --version in %s: %q; want %q…", tc.release, version, want)
			}
			if tc.release != nspawn.Bookworm {
				t.Run("notify-reload", func(t *testing.T) { testNotifyReload(t, c) })
				t.Run("master-notify-reload", func(t *testing.T) { testMasterNotifyReload(t, c) })
				t.Run("probation", func(t *testing.T) { testProbation(t, c) })
			}
			t.Run("reload", func(t *testing.T) { testReload(t, c) })
			t.Run("stop-while-draining", func(t *testing.T) { testStopWhileDraining(t, c) })
			if tc.release != nspawn.Bookworm {
				// socket and fdstore pass on 257 too, but they
				// prove systemd's restarts, where baton does
				// nothing that depends on the version: not worth
				// their 20 to 40s here.
				return
			}
			t.Run("socket", func(t *testing.T) { testSocket(t, c) })
			t.Run("fdstore", func(t *testing.T) { testFDStore(t, c) })
		})
	}
}

// reload: the upgrade systemd users expect, systemctl reload, with
// NotifyAccess=main. The library sends RELOADING=1, starts the successor
// as a child of systemd, names it MAINPID, and the old one drains. Nothing
// may fail, and systemd must follow every handover.
func testReload(t *testing.T, c *nspawn.Container) {
	s := newService(t, c, "baton-reload")
	s.install(s.unit, fmt.Sprintf(`[Unit]
Description=baton demo server, upgraded in place by systemctl reload
StartLimitIntervalSec=0

[Service]
Type=notify
ExecStart=%s -listen %s -pid-file %s -drain 10s -idle-grace 2s
ExecReload=/bin/sh -c "kill -HUP $MAINPID"
TimeoutStartSec=20s
TimeoutStopSec=20s
`, s.guestServer(), s.addr(), s.guestPIDFile()))
	s.start()

	rep := s.load(loadgen.Config{Upgrade: func(ctx context.Context) error {
		if err := s.upgradeBy("reload")(ctx); err != nil {
			return err
		}
		// The successor must be systemd's child, as if systemd had
		// started it; a main process that is not is "alien" to systemd
		// ("Supervising process N which is not our child") until its
		// parent exits and it is reparented.
		if ppid, err := s.parent(s.main); err != nil || ppid != 1 {
			return fmt.Errorf("the new main process %d has parent %d (%v); want 1, systemd", s.main, ppid, err)
		}
		return nil
	}})
	// A reload succeeds when systemd, the pid file and HTTP agree on a
	// new main process.
	for _, p := range rep.Problems() {
		t.Error(p)
	}
	if len(rep.PIDs) != loadUpgrades+1 {
		t.Errorf("requests were served by %d processes; want %d, the first and one per reload", len(rep.PIDs), loadUpgrades+1)
	}
	s.checkSocket(false)
	s.waitOnlyMain()
	if p := s.show("NRestarts"); p["NRestarts"] != "0" {
		t.Errorf("NRestarts=%s after %d reloads; want 0: a reload is not a restart", p["NRestarts"], loadUpgrades)
	}
	// d: after the handovers the main process is one systemd did not
	// start itself; stopping it must still be clean.
	s.stop()
	s.checkRefused()
}

// stop-while-draining: systemctl stop right after a reload, while the
// replaced generation still drains a slow request. That generation is no
// longer the main process, but it is in the unit: systemd sends it SIGTERM
// too (KillMode=control-group) and must wait for it, so the request
// completes and nothing is killed.
func testStopWhileDraining(t *testing.T, c *nspawn.Container) {
	s := newService(t, c, "baton-drain")
	s.install(s.unit, fmt.Sprintf(`[Unit]
Description=baton demo server, stopped while a replaced generation drains
StartLimitIntervalSec=0

[Service]
Type=notify
ExecStart=%s -listen %s -pid-file %s -drain 10s -idle-grace 2s
ExecReload=/bin/sh -c "kill -HUP $MAINPID"
TimeoutStartSec=20s
TimeoutStopSec=20s
`, s.guestServer(), s.addr(), s.guestPIDFile()))
	s.start()
	old := s.main

	const delay = 2 * time.Second
	slow := make(chan error, 1)
	go func() {
		cl := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: delay + 10*time.Second}
		resp, err := cl.Get(s.url() + "?delay=" + delay.String())
		if err == nil {
			b, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case rerr != nil:
				err = rerr
			case resp.StatusCode != http.StatusOK || !strings.HasPrefix(string(b), fmt.Sprintf("pid=%d ", old)):
				err = fmt.Errorf("%s %q; want 200 from pid %d", resp.Status, b, old)
			}
		}
		slow <- err
	}()
	time.Sleep(200 * time.Millisecond) // in the handler of the first generation

	ctx, cancel := context.WithTimeout(context.Background(), handoverTimeout)
	defer cancel()
	if err := s.upgradeBy("reload")(ctx); err != nil {
		t.Fatalf("%v", err)
	}
	if pids, err := c.UnitPIDs(s.unit); err != nil || len(pids) != 2 {
		t.Errorf("processes in %s right after the reload: %v (%v); want 2, the new main and the draining one", s.unit, pids, err)
	}
	start := time.Now()
	s.stop()
	took := time.Since(start)
	select {
	case err := <-slow:
		if err != nil {
			t.Errorf("the slow request in flight in the replaced generation: %v", err)
		}
	case <-time.After(delay + 15*time.Second):
		t.Errorf("the slow request did not end")
	}
	if took < delay/2 {
		t.Logf("systemctl stop returned after %v, before the draining generation could have finished its %v request", took.Round(time.Millisecond), delay)
	}
	s.checkRefused()
}

// socket: socket activation, and the upgrade a unit without baton gets,
// systemctl restart. The socket stays open in systemd, so no connection
// may be refused; a restart stops the old process before the new one runs,
// which costs the keep-alive clients what it costs them (measured, not
// asserted).
func testSocket(t *testing.T, c *nspawn.Container) {
	s := newService(t, c, "baton-socket")
	socket := "baton-socket.socket"
	s.units = append(s.units, socket)
	s.install(socket, fmt.Sprintf(`[Unit]
Description=listening socket of baton-socket.service

[Socket]
ListenStream=%s
`, s.addr()))
	s.install(s.unit, fmt.Sprintf(`[Unit]
Description=baton demo server, socket-activated
Requires=%[4]s
After=%[4]s
StartLimitIntervalSec=0

[Service]
Type=notify
ExecStart=%[1]s -listen %[2]s -pid-file %[3]s -drain 10s -idle-grace 2s
ExecReload=/bin/sh -c "kill -HUP $MAINPID"
TimeoutStartSec=20s
TimeoutStopSec=20s
`, s.guestServer(), s.addr(), s.guestPIDFile(), socket))
	s.systemctl("start", socket)
	s.start()
	s.checkSocket(true)

	rep := s.load(loadgen.Config{Upgrade: s.upgradeBy("restart")})
	checkNoRefused(t, rep)
	checkModeClean(t, rep, loadgen.Fresh)
	if rep.Upgrades.OK != loadUpgrades {
		t.Errorf("%d of %d restarts came back (systemd, pid file and HTTP agreeing on a new main process)", rep.Upgrades.OK, loadUpgrades)
	}
	if rep.Slow == nil || rep.Slow.OK != loadUpgrades {
		t.Errorf("slow requests: %+v; want all %d completed: the stopping process drains what it has accepted", rep.Slow, loadUpgrades)
	}
	logModeFailures(t, rep, loadgen.KeepAlive, "restart")
	s.checkSocket(true)
	s.stop()
	s.systemctl("stop", socket)
	s.checkRefused()
}

// fdstore: no .socket unit; the server keeps its listener in the file
// descriptor store, so that a restart, or a crash and Restart=always,
// finds the very same socket.
func testFDStore(t *testing.T, c *nspawn.Container) {
	s := newService(t, c, "baton-fdstore")
	s.install(s.unit, fmt.Sprintf(`[Unit]
Description=baton demo server, its listener in the file descriptor store
StartLimitIntervalSec=0

[Service]
Type=notify
FileDescriptorStoreMax=4
Restart=always
RestartSec=100ms
ExecStart=%s -fd-store -listen %s -pid-file %s -drain 10s -idle-grace 2s
ExecReload=/bin/sh -c "kill -HUP $MAINPID"
TimeoutStartSec=20s
TimeoutStopSec=20s
`, s.guestServer(), s.addr(), s.guestPIDFile()))
	s.start()
	// The first generation binds the socket itself and pushes it into
	// the store once ready.
	s.waitStored()

	t.Run("restart", func(t *testing.T) {
		defer s.reportTo(t)()
		rep := s.load(loadgen.Config{Upgrade: s.upgradeBy("restart")})
		checkNoRefused(t, rep)
		checkModeClean(t, rep, loadgen.Fresh)
		if rep.Upgrades.OK != loadUpgrades {
			t.Errorf("%d of %d restarts came back (systemd, pid file and HTTP agreeing on a new main process)", rep.Upgrades.OK, loadUpgrades)
		}
		if rep.Slow == nil || rep.Slow.OK != loadUpgrades {
			t.Errorf("slow requests: %+v; want all %d completed: the stopping process drains what it has accepted", rep.Slow, loadUpgrades)
		}
		logModeFailures(t, rep, loadgen.KeepAlive, "restart")
		s.checkSocket(true)
		// Every generation pushes the socket again; systemd must keep
		// one copy, or FileDescriptorStoreMax would fill up.
		if p := s.show("NFileDescriptorStore"); p["NFileDescriptorStore"] != "" && p["NFileDescriptorStore"] != "1" {
			t.Errorf("NFileDescriptorStore=%s after %d restarts; want 1", p["NFileDescriptorStore"], loadUpgrades)
		}
	})

	t.Run("kill", func(t *testing.T) {
		defer s.reportTo(t)()
		before := s.show("NRestarts")["NRestarts"]
		rep := s.load(loadgen.Config{
			Upgrades: 1,
			// A request in the killed process dies with it; there is
			// nothing for a slow request to prove.
			SlowDelay: -1,
			Upgrade: func(ctx context.Context) error {
				if _, err := s.c.Run("/bin/sh", "-c", "kill -9 "+strconv.Itoa(s.main)); err != nil {
					return err
				}
				return s.waitNewMain(ctx, "kill -9")
			},
		})
		checkNoRefused(t, rep)
		if rep.Upgrades.OK != 1 {
			t.Errorf("after kill -9 the service did not come back: %v", rep.Upgrades.Errors)
		}
		logModeFailures(t, rep, loadgen.Fresh, "kill -9")
		logModeFailures(t, rep, loadgen.KeepAlive, "kill -9")
		n, _ := strconv.Atoi(before)
		if p := s.show("NRestarts", "Result"); p["NRestarts"] != strconv.Itoa(n+1) {
			t.Errorf("after kill -9: %v; want NRestarts=%d (Restart=always restarted it once)", p, n+1)
		}
		s.checkSocket(true)
	})

	s.stop()
	// Stopped, not restarting: systemd lets go of the store, and the
	// socket closes with it.
	s.checkRefused()
}

// service is one unit under test: the server in it listens on addr().
type service struct {
	t     *testing.T
	c     *nspawn.Container
	name  string   // unit name without .service; names the pid file too
	unit  string   // name + ".service"
	units []string // every unit of the scenario, stopped at its end
	port  int

	main   int    // MainPID (in the container) as last seen serving
	inode  uint64 // the listening socket at start
	client *http.Client
}

func newService(t *testing.T, c *nspawn.Container, name string) *service {
	t.Helper()
	s := &service{
		t:    t,
		c:    c,
		name: name,
		unit: name + ".service",
		port: freePort(t),
		client: &http.Client{
			Transport: &http.Transport{DisableKeepAlives: true},
			Timeout:   2 * time.Second,
		},
	}
	s.units = []string{s.unit}
	t.Cleanup(func() {
		if t.Failed() {
			for _, u := range s.units {
				t.Logf("journal of %s:\n%s", u, lastLines(c.Journal(u), 200))
			}
		}
		// Whatever happened, leave nothing running for the next
		// scenario.
		args := append([]string{"stop"}, s.units...)
		c.Systemctl(args...)
	})
	return s
}

// reportTo makes s report to t, a subtest, until the returned func
// restores the test it reported to before.
func (s *service) reportTo(t *testing.T) (restore func()) {
	prev := s.t
	s.t = t
	return func() { s.t = prev }
}

func (s *service) addr() string         { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }
func (s *service) url() string          { return "http://" + s.addr() + "/" }
func (s *service) guestServer() string  { return nspawn.GuestDir + "/server" }
func (s *service) guestPIDFile() string { return nspawn.GuestDir + "/" + s.name + ".pid" }
func (s *service) hostPIDFile() string  { return filepath.Join(s.c.Dir, s.name+".pid") }

func (s *service) install(name, text string) {
	s.t.Helper()
	if err := s.c.InstallUnit(name, text); err != nil {
		s.t.Fatalf("installing %s: %v", name, err)
	}
}

func (s *service) systemctl(args ...string) {
	s.t.Helper()
	if _, err := s.c.Systemctl(args...); err != nil {
		s.t.Fatalf("%v", err)
	}
}

// show returns properties of the service, or fails the test.
func (s *service) show(props ...string) map[string]string {
	s.t.Helper()
	p, err := s.c.Show(s.unit, props...)
	if err != nil {
		s.t.Fatalf("%v", err)
	}
	return p
}

// start starts the service and waits until it serves, then notes its
// listening socket.
func (s *service) start() {
	s.t.Helper()
	s.systemctl("start", s.unit)
	ctx, cancel := context.WithTimeout(context.Background(), handoverTimeout)
	defer cancel()
	if err := s.waitNewMain(ctx, "start"); err != nil {
		s.t.Fatalf("%v", err)
	}
	inode, err := listeningInode(s.port)
	if err != nil {
		s.t.Fatalf("after start: %v", err)
	}
	s.inode = inode
}

// upgradeBy returns a loadgen upgrade: systemctl verb (reload, restart),
// then wait until systemd, the pid file and HTTP all name a new process.
func (s *service) upgradeBy(verb string) func(context.Context) error {
	return func(ctx context.Context) error {
		if _, err := s.c.Systemctl(verb, s.unit); err != nil {
			return err
		}
		return s.waitNewMain(ctx, "systemctl "+verb)
	}
}

// waitNewMain waits until systemd reports a main process other than
// s.main with the unit active and running, and the pid file and an HTTP
// response both name that process. It sets s.main to it and logs how
// long the wait took.
func (s *service) waitNewMain(ctx context.Context, after string) error {
	start := time.Now()
	deadline := time.NewTimer(handoverTimeout)
	defer deadline.Stop()
	old := s.main
	last := "nothing"
	for {
		p, err := s.c.Show(s.unit, "MainPID", "ActiveState", "SubState")
		if err != nil {
			return err
		}
		pid, _ := strconv.Atoi(p["MainPID"])
		last = fmt.Sprintf("MainPID=%s ActiveState=%s SubState=%s", p["MainPID"], p["ActiveState"], p["SubState"])
		if pid != 0 && pid != old && p["ActiveState"] == "active" && p["SubState"] == "running" {
			httpPID, gen, herr := s.get()
			filePID := s.pidFromFile()
			last += fmt.Sprintf("; HTTP answered by pid %d gen %d (%v); pid file says %d", httpPID, gen, herr, filePID)
			if httpPID == pid && filePID == pid {
				s.t.Logf("%s: pid %d → %d (gen %d) in %v", after, old, pid, gen, time.Since(start).Round(time.Millisecond))
				s.main = pid
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w before a new main process served; last seen: %s", after, ctx.Err(), last)
		case <-deadline.C:
			return fmt.Errorf("%s: no new main process serving (systemd, pid file and HTTP agreeing) within %v; last seen: %s", after, handoverTimeout, last)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// get asks the server who it is, on a new connection.
func (s *service) get() (pid, gen int, err error) {
	resp, err := s.client.Get(s.url())
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %s: %s", s.url(), resp.Status)
	}
	if _, err := fmt.Sscanf(string(b), "pid=%d gen=%d", &pid, &gen); err != nil {
		return 0, 0, fmt.Errorf("GET %s: body %q: %w", s.url(), b, err)
	}
	return pid, gen, nil
}

func (s *service) pidFromFile() int {
	b, _ := os.ReadFile(s.hostPIDFile())
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// load runs loadgen against the service with the brief's load and logs
// the report.
func (s *service) load(cfg loadgen.Config) *loadgen.Report {
	s.t.Helper()
	cfg.URL = s.url()
	cfg.Clients = loadClients
	cfg.Modes = loadModes
	if cfg.Upgrades == 0 {
		cfg.Upgrades = loadUpgrades
	}
	if cfg.SlowDelay == 0 {
		cfg.SlowDelay = loadSlowDelay
	}
	cfg.Warmup = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	rep, err := loadgen.Run(ctx, cfg)
	if err != nil {
		s.t.Fatalf("loadgen.Run: %v", err)
	}
	var b strings.Builder
	rep.WriteText(&b)
	s.t.Logf("load on %s:\n%s", s.unit, b.String())
	if rep.Stopped != "" {
		s.t.Errorf("the run stopped early: %s", rep.Stopped)
	}
	return rep
}

// checkSocket checks that one socket listens on the port, the one that
// did at start, held by the main process and, if byManager, by systemd.
func (s *service) checkSocket(byManager bool) {
	s.t.Helper()
	inode, err := listeningInode(s.port)
	if err != nil {
		s.t.Errorf("%v", err)
		return
	}
	if inode != s.inode {
		s.t.Errorf("the socket listening on port %d is inode %d; at start it was %d: the listener was replaced, not handed over", s.port, inode, s.inode)
	}
	holders := []int{s.main}
	if byManager {
		holders = append(holders, 1)
	}
	for _, pid := range holders {
		ok, err := s.holds(pid, inode)
		switch {
		case err != nil:
			s.t.Errorf("%v", err)
		case !ok:
			s.t.Errorf("pid %d (in the container; 1 is systemd) does not hold the listening socket (inode %d)", pid, inode)
		}
	}
}

// waitStored waits until systemd holds the listening socket: the server
// has pushed it into the file descriptor store.
func (s *service) waitStored() {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, err := s.holds(1, s.inode)
		if err != nil {
			s.t.Fatalf("%v", err)
		}
		if ok {
			if p, err := s.c.Show(s.unit, "NFileDescriptorStore"); err == nil && p["NFileDescriptorStore"] != "" {
				s.t.Logf("NFileDescriptorStore=%s", p["NFileDescriptorStore"])
			}
			return
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("systemd does not hold the listening socket (inode %d) 5s after the service was ready: it is not in the file descriptor store", s.inode)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// holds reports whether pid (in the container) has socket inode open.
func (s *service) holds(pid int, inode uint64) (bool, error) {
	out, err := s.c.Run("/bin/sh", "-c", `for f in /proc/$1/fd/*; do readlink "$f"; done`, "sh", strconv.Itoa(pid))
	if err != nil {
		return false, err
	}
	for _, l := range strings.Fields(out) {
		if ino, ok := procfs.ParseSocketLink(l); ok && ino == inode {
			return true, nil
		}
	}
	return false, nil
}

// waitOnlyMain waits until the main process is all that runs in the unit:
// every replaced generation has drained and exited.
func (s *service) waitOnlyMain() {
	s.t.Helper()
	deadline := time.Now().Add(exitTimeout)
	for {
		pids, err := s.c.UnitPIDs(s.unit)
		if err != nil {
			s.t.Fatalf("%v", err)
		}
		if len(pids) == 1 && pids[0] == s.main {
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("processes in %s %v after %v; want only the main process %d: replaced generations did not exit", s.unit, pids, exitTimeout, s.main)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop stops the service and checks that it ended cleanly: Result=success,
// no SIGKILL needed, nothing left in its cgroup.
func (s *service) stop() {
	s.t.Helper()
	before := s.c.Journal(s.unit)
	start := time.Now()
	s.systemctl("stop", s.unit)
	took := time.Since(start).Round(time.Millisecond)
	p := s.show("Result", "ActiveState", "SubState", "MainPID")
	s.t.Logf("systemctl stop took %v: %v", took, p)
	if p["Result"] != "success" || p["ActiveState"] != "inactive" || p["SubState"] != "dead" || p["MainPID"] != "0" {
		s.t.Errorf("after systemctl stop: %v; want Result=success ActiveState=inactive SubState=dead MainPID=0", p)
	}
	if pids, err := s.c.UnitPIDs(s.unit); err != nil || len(pids) > 0 {
		s.t.Errorf("processes left in %s after stop: %v (%v); want none", s.unit, pids, err)
	}
	all := s.c.Journal(s.unit)
	// Only what the stop logged: a scenario may have killed the service
	// on purpose before.
	stopping := strings.TrimPrefix(all, before)
	for _, bad := range []string{"signal SIGKILL", "timed out", "Failed with result"} {
		if strings.Contains(stopping, bad) {
			s.t.Errorf("stopping %s, systemd logged %q; want a clean stop:\n%s", s.unit, bad, lastLines(stopping, 40))
			break
		}
	}
	// Anywhere: systemd ignoring a notification, or watching a main
	// process it cannot wait for. (systemd 257 no longer logs an ignored
	// notification at its default level: there, that MainPID follows
	// is the proof.)
	for _, bad := range []string{"reception only permitted", "which is not our child"} {
		if i := strings.Index(all, bad); i >= 0 {
			line := all[strings.LastIndexByte(all[:i], '\n')+1:]
			line, _, _ = strings.Cut(line, "\n")
			s.t.Errorf("systemd logged for %s: %s", s.unit, line)
		}
	}
}

// parent returns the parent of pid, both in the container: its
// /proc/PID/stat is read there, and parsed here.
func (s *service) parent(pid int) (int, error) {
	out, err := s.c.Run("cat", fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	st, err := procfs.ParseStat([]byte(out))
	if err != nil {
		return 0, err
	}
	return st.PPID, nil
}

// checkRefused checks that nothing listens on the port any more.
func (s *service) checkRefused() {
	s.t.Helper()
	conn, err := net.DialTimeout("tcp", s.addr(), 2*time.Second)
	if err == nil {
		conn.Close()
		s.t.Errorf("%s accepts a connection after stop; want it refused", s.addr())
		return
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		s.t.Errorf("dialing %s after stop: %v; want connection refused", s.addr(), err)
	}
}

// checkNoRefused fails t if any client had a connection refused: the
// listening socket must stay open through every upgrade.
func checkNoRefused(t *testing.T, rep *loadgen.Report) {
	t.Helper()
	for _, m := range rep.Modes {
		if m.Failures.Refused > 0 {
			t.Errorf("%s clients: %d connections refused; want none: the listening socket must stay open throughout", m.Mode, m.Failures.Refused)
		}
	}
}

// checkModeClean fails t if any request of mode failed.
func checkModeClean(t *testing.T, rep *loadgen.Report, mode loadgen.Mode) {
	t.Helper()
	for _, m := range rep.Modes {
		if m.Mode == mode && m.Failures.Total() > 0 {
			t.Errorf("%s clients: %d of %d requests failed (%s); want none", mode, m.Failures.Total(), m.Requests, classes(m.Failures))
		}
	}
}

// logModeFailures reports, without judging, what clients of mode saw.
func logModeFailures(t *testing.T, rep *loadgen.Report, mode loadgen.Mode, across string) {
	t.Helper()
	for _, m := range rep.Modes {
		if m.Mode == mode {
			t.Logf("measured: %s clients, across %d × %s: %d of %d requests failed (%s)",
				mode, rep.Upgrades.OK+rep.Upgrades.Failed, across, m.Failures.Total(), m.Requests, classes(m.Failures))
		}
	}
}

func classes(f loadgen.Failures) string {
	return fmt.Sprintf("refused %d, reset %d, eof %d, timeout %d, non-200 %d, other %d",
		f.Refused, f.Reset, f.EOF, f.Timeout, f.Non200, f.Other)
}

// listeningInode returns the inode of the one IPv4 TCP socket listening
// on port, whatever its address. The container shares the host's network
// namespace, so the host's /proc/net/tcp shows it.
func listeningInode(port int) (uint64, error) {
	socks, err := procfs.NetTCP()
	if err != nil {
		return 0, err
	}
	var inodes []uint64
	for _, s := range socks {
		if s.State == procfs.TCPListen && s.Local.Addr().Is4() && int(s.Local.Port()) == port {
			inodes = append(inodes, s.Inode)
		}
	}
	if len(inodes) != 1 {
		return 0, fmt.Errorf("%d sockets listen on port %d (inodes %v); want exactly one", len(inodes), port, inodes)
	}
	return inodes[0], nil
}

// freePort returns a TCP port nothing on the host listens on just now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
