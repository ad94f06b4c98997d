//go:build linux

package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/environ"
	"github.com/batonhq/baton/internal/procfs"
	"golang.org/x/sys/unix"
)

// lineTimeout bounds every wait for a helper's line. A handoff of
// thousands of sockets takes under a second even on a busy machine; a
// minute means something hangs, not that the machine is slow.
const lineTimeout = time.Minute

// chain is a helper and the generations that replaced it. They all write
// to one pipe, read here line by line.
type chain struct {
	tb    testing.TB
	lines <-chan string
	cur   int    // pid of the serving generation; 0 once stopped
	first string // the first line printed
	once  sync.Once
}

// startChain starts helper with env ("K=V") and waits until it is ready.
// The chain is stopped, and checked to have left nothing running, when the
// benchmark ends, if not before by stop.
func startChain(tb testing.TB, helper string, env ...string) *chain {
	tb.Helper()
	c := startProgram(tb, os.Args[0], []string{os.Args[0]}, helperEnv(helper, env), os.Stderr)
	if word(c.first) != "ready" || field(c.first, "pid") != c.cur {
		tb.Fatalf("helper %s (pid %d) said %q, want \"ready pid=%d\"", helper, c.cur, c.first, c.cur)
	}
	return c
}

// startProgram starts path with args and env, its stdout a pipe that its
// descendants share and its stderr stderr, and waits for the first line on
// the pipe (in c.first). c.cur is the pid started.
func startProgram(tb testing.TB, path string, args, env []string, stderr *os.File) *chain {
	tb.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		tb.Fatal(err)
	}
	null, err := os.Open(os.DevNull)
	if err != nil {
		tb.Fatal(err)
	}
	proc, err := os.StartProcess(path, args, &os.ProcAttr{
		Env:   env,
		Files: []*os.File{null, w, stderr},
	})
	w.Close()
	null.Close()
	if err != nil {
		r.Close()
		tb.Fatalf("starting %s: %v", path, err)
	}
	pid := proc.Pid
	// We reap with wait4, like the generations it starts, which are not
	// ours to Wait for as *os.Process values.
	proc.Release()

	lines := make(chan string, 16)
	go func() {
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	c := &chain{tb: tb, lines: lines, cur: pid}
	tb.Cleanup(c.stop)
	c.first = c.line()
	return c
}

// helperEnv is our environment for helper, without anything that would make
// the helper believe it was started by an upgrade.
func helperEnv(helper string, extra []string) []string {
	env := environ.Without(os.Environ(), envHelper, envLib, envSockets, envOwner, envDrain, envAddr, envReadyFD, "BATON_HANDOFF", "TABLEFLIP_HAS_PARENT_7DIU3")
	env = append(env, envHelper+"="+helper, envOwner+"="+strconv.Itoa(os.Getpid()))
	return append(env, extra...)
}

// line returns the next line any generation printed.
func (c *chain) line() string {
	c.tb.Helper()
	ctx, cancel := context.WithTimeoutCause(context.Background(), lineTimeout, fmt.Errorf("none in %v", lineTimeout))
	defer cancel()
	l, err := c.next(ctx)
	if err != nil {
		c.tb.Fatal(err)
	}
	return l
}

// next returns the next line any generation printed, or an error when
// every generation has exited or ctx is done. Unlike line, it may be
// called from any goroutine.
func (c *chain) next(ctx context.Context) (string, error) {
	select {
	case l, ok := <-c.lines:
		if !ok {
			return "", errors.New("every helper generation exited (see stderr)")
		}
		return l, nil
	case <-ctx.Done():
		return "", fmt.Errorf("no line from the helpers: %w", context.Cause(ctx))
	}
}

// upgrade asks the serving generation to upgrade, waits for its successor
// to be ready, reaps the old generation, and returns the handoff time the
// old generation measured.
func (c *chain) upgrade() time.Duration {
	c.tb.Helper()
	old := c.cur
	if err := unix.Kill(old, unix.SIGHUP); err != nil {
		c.tb.Fatalf("kill -HUP %d: %v", old, err)
	}
	var took time.Duration
	next := 0
	for took == 0 || next == 0 {
		l := c.line()
		switch {
		case word(l) == "upgraded" && field(l, "pid") == old:
			ns, _ := strconv.ParseInt(fieldString(l, "ns"), 10, 64)
			took = max(time.Duration(ns), 1)
		case word(l) == "ready" && field(l, "pid") != old:
			next = field(l, "pid")
		default:
			c.tb.Fatalf("upgrading pid %d: unexpected line %q", old, l)
		}
	}
	c.cur = next
	// The successor saw the old generation gone before it said ready, so
	// this is quick.
	if err := reap(old, lineTimeout); err != nil {
		c.tb.Fatalf("old generation: %v", err)
	}
	return took
}

// stop ends the chain: SIGTERM to the serving generation, then checks
// that every process is gone — the shared pipe reached EOF — and that no
// child of ours is left. Any that is, is a generation we lost track of
// (after a failure): it is reported and stopped, SIGTERM first, and its
// successor, which then becomes our child, in the next round.
func (c *chain) stop() {
	c.once.Do(func() {
		if c.cur != 0 {
			// ESRCH: it is already gone and reaped, after a failure.
			if err := unix.Kill(c.cur, unix.SIGTERM); err == nil {
				if err := reap(c.cur, 10*time.Second); err != nil {
					c.tb.Errorf("last generation: %v", err)
				}
			}
			c.cur = 0
		}
		start := time.Now()
		for {
			select {
			case l, ok := <-c.lines:
				if !ok {
					return
				}
				c.tb.Logf("late line from a helper: %q", l)
				continue
			case <-time.After(100 * time.Millisecond):
			}
			sig := unix.SIGTERM
			if time.Since(start) > 10*time.Second {
				sig = unix.SIGKILL
			}
			for pid, state := range children(os.Getpid()) {
				c.tb.Errorf("pid %d (state %s) left running; sending %v", pid, state, sig)
				unix.Kill(pid, sig)
				reap(pid, 10*time.Second)
			}
			if time.Since(start) > 30*time.Second {
				c.tb.Errorf("a process not our child still holds the helpers' stdout")
				return
			}
		}
	})
}

// reap waits up to d for pid, our child, to exit and reaps it. It kills
// and reaps pid if it still runs after d, and says so.
func reap(pid int, d time.Duration) error {
	done := make(chan error, 1)
	go func() {
		for {
			var ws unix.WaitStatus
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err == nil && !(ws.Exited() && ws.ExitStatus() == 0) && ws.Signal() != unix.SIGTERM {
				err = fmt.Errorf("pid %d ended badly: %s", pid, describe(ws))
			}
			done <- err
			return
		}
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		unix.Kill(pid, unix.SIGKILL)
		<-done
		return fmt.Errorf("pid %d still running after %v; killed", pid, d)
	}
}

func describe(ws unix.WaitStatus) string {
	if ws.Signaled() {
		return "signal " + ws.Signal().String()
	}
	return "exit status " + strconv.Itoa(ws.ExitStatus())
}

// children returns the pids whose parent is pid, with their states.
func children(pid int) map[int]string {
	out := map[int]string{}
	kids, _ := procfs.Children(pid)
	for _, k := range kids {
		out[k.PID] = string(k.State)
	}
	return out
}

// vmRSS returns the resident set size of pid in bytes.
func vmRSS(pid int) (int64, error) {
	kib, err := procfs.VmRSS(pid)
	return kib << 10, err
}

// word is the first word of a helper's line.
func word(line string) string {
	w, _, _ := strings.Cut(line, " ")
	return w
}

// fieldString returns the value of key=value in a helper's line.
func fieldString(line, key string) string {
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			return v
		}
	}
	return ""
}

func field(line, key string) int {
	n, _ := strconv.Atoi(fieldString(line, key))
	return n
}
