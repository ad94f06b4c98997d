//go:build linux

// Package proctest runs real processes in tests: the test binary re-executed
// as a registered helper, with a timeout derived from the test's deadline, a
// goroutine dump (SIGQUIT) when it hangs, and checks that every process a
// test caused — including orphaned generations adopted by the test process
// as a child subreaper — has exited and been reaped.
package proctest

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/reaper"
	"golang.org/x/sys/unix"
)

const envHelper = "PROCTEST_HELPER"

var helpers = map[string]func(){}

// Register makes f runnable as helper name. Call it from init.
func Register(name string, f func()) { helpers[name] = f }

// Main runs the helper named by the environment, or else the tests. The
// test process becomes a child subreaper, so generations orphaned by their
// parent's exit are reparented to it and can be checked and reaped.
func Main(m *testing.M) {
	if name := os.Getenv(envHelper); name != "" {
		// The variable stays set: successors re-executed by the helper
		// must run as the helper too, never as the whole test suite.
		f, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "proctest: no helper %q\n", name)
			os.Exit(2)
		}
		f()
		os.Exit(0)
	}
	if err := reaper.BecomeSubreaper(); err != nil {
		fmt.Fprintf(os.Stderr, "proctest: %v\n", err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// Proc is a helper process started by Start.
type Proc struct {
	t   testing.TB
	Cmd *exec.Cmd
	// Out is the file the helper's stdout and stderr go to. It is shared
	// by every generation the helper starts, which inherit it.
	Out string

	waitOnce sync.Once
	waitErr  error
	done     chan struct{}
}

// Start runs helper with extra environment env ("K=V") and args. Output
// goes to a file (not a pipe: successors inherit it and outlive the
// helper, and a pipe would keep Wait from returning). The process is
// killed, with a goroutine dump first, if it outlives the test's deadline.
func Start(t testing.TB, helper string, env []string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), env...)
	return StartCommand(t, helper, cmd)
}

// StartCommand is Start for a command the caller prepared: another copy of
// the test binary, another argv[0], another working directory. cmd.Env, if
// set, must include os.Environ() for the helper to behave like the tests.
func StartCommand(t testing.TB, helper string, cmd *exec.Cmd) *Proc {
	t.Helper()
	if _, ok := helpers[helper]; !ok {
		t.Fatalf("proctest.Start: no helper %q registered", helper)
	}
	dir := t.TempDir()
	out := filepath.Join(dir, helper+".out")
	f, err := os.OpenFile(out, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, envHelper+"="+helper)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("proctest.Start(%s): %v", helper, err)
	}
	p := &Proc{t: t, Cmd: cmd, Out: out, done: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		close(p.done)
	}()
	timeout := 5 * time.Minute
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if dl, ok := d.Deadline(); ok {
			timeout = time.Until(dl) - 10*time.Second
		}
	}
	timer := time.AfterFunc(timeout, func() {
		t.Errorf("proctest: %s (pid %d) still running at the test deadline; SIGQUIT", helper, cmd.Process.Pid)
		cmd.Process.Signal(syscall.SIGQUIT)
		time.Sleep(2 * time.Second)
		cmd.Process.Kill()
	})
	t.Cleanup(func() {
		timer.Stop()
		select {
		case <-p.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(10 * time.Second):
				t.Errorf("proctest: %s (pid %d) ignored SIGTERM for 10s; SIGQUIT", helper, cmd.Process.Pid)
				cmd.Process.Signal(syscall.SIGQUIT)
				time.Sleep(time.Second)
				cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(out)
			t.Logf("output of %s and its successors:\n%s", helper, b)
		}
	})
	return p
}

// Pid is the helper's pid.
func (p *Proc) Pid() int { return p.Cmd.Process.Pid }

// Wait waits up to d for the helper to exit and returns its state.
func (p *Proc) Wait(d time.Duration) (*os.ProcessState, error) {
	select {
	case <-p.done:
		return p.Cmd.ProcessState, p.waitErr
	case <-time.After(d):
		return nil, fmt.Errorf("proctest: pid %d still running after %v", p.Pid(), d)
	}
}

// Output returns what the helper and its successors printed so far.
func (p *Proc) Output() string {
	b, _ := os.ReadFile(p.Out)
	return string(b)
}

// WaitLine waits up to d for an output line with prefix and returns it.
// Lines already seen by earlier calls count too: use distinct prefixes.
func (p *Proc) WaitLine(prefix string, d time.Duration) (string, error) {
	deadline := time.Now().Add(d)
	for {
		sc := bufio.NewScanner(strings.NewReader(p.Output()))
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), prefix) {
				return sc.Text(), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("proctest: no line starting %q within %v", prefix, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Field returns the value of key=value in a line of space-separated fields.
func Field(line, key string) string {
	for _, f := range strings.Fields(line) {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// State returns the one-letter state of pid from /proc ("R", "S", "Z", …),
// or "" if there is no such process.
func State(pid int) string {
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return ""
	}
	return string(st.State)
}

// Alive reports whether pid runs: it exists and is not a zombie. (kill -0
// succeeds on zombies, which linger until their parent reaps them.)
func Alive(pid int) bool { return procfs.Alive(pid) }

// Parent returns the parent pid of pid, or 0.
func Parent(pid int) int {
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return 0
	}
	return st.PPID
}

// Children returns the pids whose parent is pid, with their states.
func Children(pid int) map[int]string {
	out := map[int]string{}
	kids, _ := procfs.Children(pid)
	for _, k := range kids {
		out[k.PID] = string(k.State)
	}
	return out
}

// FdCount returns how many descriptors pid has open, or -1.
func FdCount(pid int) int {
	n, err := procfs.FDCount(pid)
	if err != nil {
		return -1
	}
	return n
}

// Reap waits up to d for pid to exit and, if it is our child (an orphaned
// generation adopted by this subreaper), reaps it. It returns an error if
// pid still runs after d (its state then in the error); the caller decides
// whether to kill it.
func Reap(pid int, d time.Duration) error {
	if err := reaper.Await(pid, d); err != nil {
		return fmt.Errorf("%w (state %q)", err, State(pid))
	}
	return nil
}

// Track makes the test fail unless pid has exited within d of the test's
// end; it is then reaped, or killed and reaped if it was still running.
func Track(t testing.TB, pid int, d time.Duration) {
	t.Cleanup(func() {
		if err := Reap(pid, d); err != nil {
			t.Errorf("orphaned generation: %v; killing it", err)
			unix.Kill(pid, unix.SIGKILL)
			Reap(pid, 5*time.Second)
		}
	})
}

// CopyExecutable copies the file at src to dst (mode 0755, its directory
// made if missing) for a test to run, and has cp(1) write it. A test
// process that wrote dst itself would hold it open for writing for a
// moment, and a process forked meanwhile by any parallel test inherits
// that descriptor until its own exec: exec of dst then fails with ETXTBSY,
// "text file busy" (golang/go#22315; seen in this suite). cp holds the
// only writable descriptor, in a process of its own that has exited when
// CopyExecutable returns.
func CopyExecutable(t testing.TB, src, dst string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "--", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp %s %s: %v\n%s", src, dst, err, out)
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		t.Fatal(err)
	}
}
