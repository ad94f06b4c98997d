//go:build linux

package proctest

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Generations follows an upgradable server through its generations, as an
// operator's tooling does: the helper a test started, then each successor
// its PID file names. It is the examples' upgrade harness (SIGHUP to the
// serving generation, the PID file naming the next, SIGTERM at the end,
// every generation reaped), written once.
type Generations struct {
	tb      testing.TB
	p       *Proc
	pidFile string
	step    time.Duration
	pids    []int        // in order; the last one serves
	gone    map[int]bool // reaped by WaitGone
}

// FollowGenerations waits up to step for pidFile to name p, the first
// generation, and follows the server from there; step also bounds each
// later wait.
func FollowGenerations(tb testing.TB, p *Proc, pidFile string, step time.Duration) *Generations {
	tb.Helper()
	pid := WaitPIDFile(tb, pidFile, 0, step)
	if pid != p.Pid() {
		tb.Fatalf("pid file names %d; want the first generation, %d", pid, p.Pid())
	}
	return &Generations{tb: tb, p: p, pidFile: pidFile, step: step, pids: []int{pid}, gone: make(map[int]bool)}
}

// Current is the serving generation's pid.
func (g *Generations) Current() int { return g.pids[len(g.pids)-1] }

// Pids are the generations' pids, oldest first.
func (g *Generations) Pids() []int { return append([]int(nil), g.pids...) }

// Upgrade sends SIGHUP to the serving generation and waits for the PID
// file to name its successor, which it returns. The old generation drains
// meanwhile; WaitGone or Stop reaps it, or the end of the test (Track).
func (g *Generations) Upgrade() int {
	g.tb.Helper()
	old := g.Current()
	if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
		g.tb.Fatalf("SIGHUP to %d: %v", old, err)
	}
	pid := WaitPIDFile(g.tb, g.pidFile, old, g.step)
	Track(g.tb, pid, g.step)
	g.pids = append(g.pids, pid)
	return pid
}

// WaitGone waits for generation pid to exit, and reaps it.
func (g *Generations) WaitGone(pid int) {
	g.tb.Helper()
	var err error
	if pid == g.p.Pid() {
		_, err = g.p.Wait(g.step)
	} else {
		err = Reap(pid, g.step)
	}
	if err != nil {
		g.tb.Fatalf("generation %d did not exit: %v", pid, err)
	}
	g.gone[pid] = true
}

// Stop sends SIGTERM to the serving generation and waits for every
// generation not yet reaped to exit.
func (g *Generations) Stop() {
	g.tb.Helper()
	if err := syscall.Kill(g.Current(), syscall.SIGTERM); err != nil {
		g.tb.Fatalf("SIGTERM to %d: %v", g.Current(), err)
	}
	for _, pid := range g.pids {
		if !g.gone[pid] {
			g.WaitGone(pid)
		}
	}
}

// WaitLog returns the first line of p's output (its successors' too) that
// contains substr, waiting up to d; it fails the test if p exits first.
func (p *Proc) WaitLog(tb testing.TB, substr string, d time.Duration) string {
	tb.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		for l := range strings.SplitSeq(p.Output(), "\n") {
			if strings.Contains(l, substr) {
				return l
			}
		}
		if st, _ := p.Wait(10 * time.Millisecond); st != nil {
			tb.Fatalf("the server exited (%v) before logging %q", st, substr)
		}
	}
	tb.Fatalf("no log line with %q within %v", substr, d)
	return ""
}

// StartServer is Start for an upgradable server's first generation: its
// successors inherit env too. A race-instrumented generation would sleep a
// second at exit (GORACE's atexit_sleep_ms) unless GORACE is set; its
// races are caught all the same, for the test fails at its end if any
// generation reported one.
func StartServer(tb testing.TB, helper string, env []string, args ...string) *Proc {
	tb.Helper()
	if os.Getenv("GORACE") == "" {
		env = append(env, "GORACE=atexit_sleep_ms=0")
	}
	p := Start(tb, helper, env, args...)
	tb.Cleanup(func() {
		if strings.Contains(p.Output(), "WARNING: DATA RACE") {
			tb.Error("a generation of the server reported a data race")
		}
	})
	return p
}

// EnvInt returns the positive integer in the environment variable name,
// or def if it is unset; anything else fails the test. Long runs of a test
// are asked for this way.
func EnvInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		tb.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}
