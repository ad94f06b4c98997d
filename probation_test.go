//go:build linux

package baton_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/proctest"
)

// goroutinesOf asks the serving generation of s how many goroutines it
// runs.
func goroutinesOf(t *testing.T, s *server) int {
	t.Helper()
	body, err := s.get("/goroutines")
	if err != nil {
		t.Fatalf("GET /goroutines: %v", err)
	}
	n, err := strconv.Atoi(proctest.Field(body, "goroutines"))
	if err != nil {
		t.Fatalf("GET /goroutines = %q: %v", body, err)
	}
	return n
}

// A successful upgrade with a probation: during the window both
// generations answer, the incumbent's Exit is not closed and the PID
// file still names it; once the window has passed, the incumbent drains
// and the PID file names the successor. A SIGHUP to the successor during
// its probation (HandleSignals) upgrades once the probation has passed,
// not before. Nothing leaks: the third generation holds the descriptors
// and runs the goroutines the first did.
func TestProbationPasses(t *testing.T) {
	t.Parallel()
	const window = 3 * time.Second
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "server.pid")
	s := startServer(t, serverConfig{Dir: dir, PIDFile: pidFile, Probation: window, HandleSignals: true})
	incumbent := s.pid
	if got := proctest.ReadPIDFile(pidFile); got != incumbent {
		t.Fatalf("PID file names %d; want generation 1 (%d)", got, incumbent)
	}
	s.get("/")
	baseFds, baseG := settledFds(incumbent), goroutinesOf(t, s)

	sent := time.Now()
	if err := syscall.Kill(incumbent, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	s.waitReady(2)
	successor := s.pid

	// SIGHUP to the successor on probation: it must wait for the end of
	// the probation (its Upgrade says ErrOnProbation meanwhile).
	if err := syscall.Kill(successor, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}

	// Until the PID file names the successor, both answer. Fresh
	// connections: each lands on whichever process accepts it.
	answered := map[int]int{}
	var switched time.Time
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		pid := proctest.ReadPIDFile(pidFile)
		if pid == successor {
			switched = time.Now()
			break
		}
		if pid != incumbent {
			t.Fatalf("during the probation the PID file names %d; want the incumbent %d", pid, incumbent)
		}
		body, err := s.get("/")
		if err != nil {
			t.Fatalf("GET / during the probation: %v", err)
		}
		p, _ := strconv.Atoi(proctest.Field(body, "pid"))
		answered[p]++
		time.Sleep(5 * time.Millisecond)
	}
	if switched.IsZero() {
		t.Fatalf("the PID file never named the successor %d", successor)
	}
	t.Logf("during the probation: %v answered (pid: requests); the PID file switched %v after the SIGHUP", answered, switched.Sub(sent).Round(time.Millisecond))
	if answered[incumbent] == 0 || answered[successor] == 0 {
		t.Errorf("during the probation %v answered; want both the incumbent %d and the successor %d", answered, incumbent, successor)
	}
	// The window is a deliberate delay: neither the PID file nor the
	// incumbent's Exit may move before it has passed.
	if d := switched.Sub(sent); d < window {
		t.Errorf("the PID file named the successor %v after the SIGHUP; want no sooner than the probation, %v", d, window)
	}
	if _, err := s.proc.WaitLine("draining gen=1 ", 30*time.Second); err != nil {
		t.Fatalf("the incumbent never drained: %v", err)
	}
	if d := time.Since(sent); d < window {
		t.Errorf("the incumbent drained %v after the SIGHUP; want no sooner than the probation, %v", d, window)
	}

	// The SIGHUP the successor got during its probation: carried out
	// once it passed.
	s.waitReady(3)
	if got := proctest.ReadPIDFile(pidFile); got == incumbent {
		t.Errorf("generation 3 was ready while the PID file still named generation 1")
	}
	if d := time.Since(sent); d < window {
		t.Errorf("generation 3 was ready %v after the first SIGHUP; want the upgrade held until generation 2's probation (%v) passed", d, window)
	}
	if !strings.Contains(s.proc.Output(), "SIGHUP during the probation: upgrading as soon as it passed") {
		t.Errorf("generation 2 did not say it held the SIGHUP for its probation:\n%s", s.proc.Output())
	}
	if _, err := s.proc.WaitLine("draining gen=2 ", 30*time.Second); err != nil {
		t.Fatalf("generation 2 never drained: %v", err)
	}
	// The successor renames it in when told that it passed, which is
	// when its predecessor drains: either may come first.
	if !waitFor(10*time.Second, func() bool { return proctest.ReadPIDFile(pidFile) == s.pid }) {
		t.Errorf("after generation 3's probation the PID file names %d; want %d", proctest.ReadPIDFile(pidFile), s.pid)
	}
	if _, err := s.proc.WaitLine("exit gen=2 ", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if _, err := s.proc.WaitLine("parent-gone gen=3", 30*time.Second); err != nil {
		t.Fatal(err)
	}

	// Nothing leaked: generation 3, its predecessors gone, holds what
	// generation 1 held. (Counts only the process knows, asked until its
	// last clients' connections have closed.)
	if got := quietFds(s.pid, baseFds); got != baseFds {
		t.Errorf("generation 3 has %d descriptors open; generation 1 had %d:%s", got, baseFds, fdList(s.pid))
	}
	var g int
	waitFor(10*time.Second, func() bool {
		g = goroutinesOf(t, s)
		return g == baseG
	})
	if g != baseG {
		t.Errorf("generation 3 runs %d goroutines; generation 1 ran %d", g, baseG)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, ".server.pid.*")); len(tmps) > 0 {
		t.Errorf("temporary PID files left behind: %v", tmps)
	}
	s.stop()
}

// Stop during the probation (SIGTERM to the incumbent) ends it as passed:
// the successor takes over at once — with a window of a minute, the
// incumbent drains long before it — and is named by the PID file; the
// incumbent's stop is not final, so the successor keeps the socket files.
func TestProbationStop(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "server.pid")
	s := startServer(t, serverConfig{Dir: dir, PIDFile: pidFile, Probation: time.Minute, HandleSignals: true})
	incumbent := s.pid
	s.mustUpgrade()
	if got := proctest.ReadPIDFile(pidFile); got != incumbent {
		t.Fatalf("on probation, the PID file names %d; want the incumbent %d", got, incumbent)
	}
	if err := syscall.Kill(incumbent, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := s.proc.WaitLine("draining gen=1 ", 30*time.Second); err != nil {
		t.Fatalf("SIGTERM during the probation: the incumbent did not drain: %v", err)
	}
	if !waitFor(10*time.Second, func() bool { return proctest.ReadPIDFile(pidFile) == s.pid }) {
		t.Errorf("after the incumbent's stop the PID file names %d; want the successor %d", proctest.ReadPIDFile(pidFile), s.pid)
	}
	if _, err := s.proc.WaitLine("exit gen=1 ", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if got := s.servingPid(); got != s.pid {
		t.Errorf("pid %d answered; want the successor %d", got, s.pid)
	}
	if _, err := os.Stat(filepath.Join(dir, "s.sock")); err != nil {
		t.Errorf("the unix socket file is gone after the incumbent's stop: %v", err)
	}
	if got := unixGet(t, filepath.Join(dir, "s.sock")); !strings.Contains(got, fmt.Sprintf("pid=%d", s.pid)) {
		t.Errorf("GET over the unix socket = %q; want pid=%d", got, s.pid)
	}
	s.stop()
}

// An incumbent stopped (SIGSTOP) during its successor's probation never
// says it passed: the successor, which serves all along, names itself once
// the window and UpgradeTimeout have passed rather than leave the PID
// file to a process that may never answer again.
func TestProbationIncumbentSilent(t *testing.T) {
	t.Parallel()
	const window, timeout = time.Second, 2 * time.Second
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "server.pid")
	s := startServer(t, serverConfig{Dir: dir, PIDFile: pidFile, Probation: window, UpgradeTimeout: timeout, HandleSignals: true})
	incumbent := s.pid
	s.mustUpgrade()
	stopped := time.Now()
	if err := syscall.Kill(incumbent, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// Resumed whatever happens, so that the test's cleanup can stop it.
	defer syscall.Kill(incumbent, syscall.SIGCONT)
	if !waitFor(30*time.Second, func() bool { return proctest.ReadPIDFile(pidFile) == s.pid }) {
		t.Fatalf("with the incumbent stopped, the PID file still names %d; want the successor %d", proctest.ReadPIDFile(pidFile), s.pid)
	}
	// A deliberate delay, so a lower bound: not before the window and
	// the timeout (less the time the upgrade itself took before SIGSTOP).
	if d := time.Since(stopped); d < timeout {
		t.Errorf("the successor named itself %v after the incumbent stopped; want no sooner than UpgradeTimeout, %v", d, timeout)
	}
	if !strings.Contains(s.proc.Output(), "the predecessor said nothing since the probation should have ended") {
		t.Errorf("the successor did not say why it named itself:\n%s", s.proc.Output())
	}
	if err := syscall.Kill(incumbent, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	if got := s.servingPid(); got != s.pid && got != incumbent {
		t.Errorf("pid %d answered; want the successor %d or the incumbent %d", got, s.pid, incumbent)
	}
	s.stop()
}
