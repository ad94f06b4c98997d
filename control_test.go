//go:build linux

package baton_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/proctest"
)

func init() {
	proctest.Register("dial-control", dialControlMain)
}

// instances drives independent instances of the test server that take the
// sockets over from each other through a control socket: each is started
// by the test, as a supervisor would, not by its predecessor.
type instances struct {
	t       *testing.T
	env     []string // the server's configuration, and anything added
	control string
	procs   []*proctest.Proc
	tcp     string
	gen     int
	pid     int
}

// startInstances starts the first instance, with cfg's Dir and Control
// set to new paths.
func startInstances(t *testing.T, cfg serverConfig, env ...string) *instances {
	t.Helper()
	cfg.Dir = t.TempDir()
	cfg.Control = filepath.Join(cfg.Dir, "ctl", "control.sock")
	in := &instances{t: t, control: cfg.Control, env: append([]string{cfg.env()}, env...)}
	if err := in.next(); err != nil {
		t.Fatal(err)
	}
	return in
}

// next starts a new instance and waits until it serves, with the
// generation after the current one.
func (in *instances) next() error {
	p := proctest.Start(in.t, "server", in.env)
	line, err := p.WaitLine(fmt.Sprintf("ready gen=%d ", in.gen+1), 30*time.Second)
	if err != nil {
		return fmt.Errorf("instance %d: %v\n%s", len(in.procs)+1, err, p.Output())
	}
	tcp := proctest.Field(line, "tcp")
	if in.tcp != "" && tcp != in.tcp {
		return fmt.Errorf("instance %d serves %s, its predecessor served %s: not the same socket", len(in.procs)+1, tcp, in.tcp)
	}
	in.procs = append(in.procs, p)
	in.tcp, in.gen = tcp, in.gen+1
	in.pid, _ = strconv.Atoi(proctest.Field(line, "pid"))
	return nil
}

// A new instance started beside a serving one — not by it — takes its
// sockets over through the control socket, under load, and not a request
// fails: the supervisor-restart path without a supervisor in the way.
func TestControlTakeoverUnderLoad(t *testing.T) {
	for _, mode := range []loadgen.Mode{loadgen.Fresh, loadgen.KeepAlive} {
		t.Run(string(mode), func(t *testing.T) {
			in := startInstances(t, serverConfig{IdleGrace: 2 * time.Second}) // see TestZeroFailedRequestsUnderLoad
			var mu sync.Mutex
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rep, err := loadgen.Run(ctx, loadgen.Config{
				URL:      "http://" + in.tcp + "/",
				Clients:  16,
				Modes:    []loadgen.Mode{mode},
				Upgrades: 10,
				Upgrade: func(context.Context) error {
					mu.Lock()
					defer mu.Unlock()
					return in.next()
				},
				Warmup:    300 * time.Millisecond,
				Settle:    100 * time.Millisecond,
				SlowDelay: 300 * time.Millisecond,
			})
			if err != nil {
				t.Fatalf("loadgen.Run: %v", err)
			}
			var b strings.Builder
			rep.WriteText(&b)
			t.Logf("\n%s", b.String())
			for _, p := range rep.Problems() {
				t.Error(p)
			}
			// Every instance but the last has drained and exited by itself.
			for i, p := range in.procs[:len(in.procs)-1] {
				if _, err := p.Wait(20 * time.Second); err != nil {
					t.Errorf("instance %d: %v", i+1, err)
				}
			}
			if err := syscall.Kill(in.pid, syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if _, err := in.procs[len(in.procs)-1].Wait(20 * time.Second); err != nil {
				t.Fatal(err)
			}
			// The last one was the final generation: it removed the socket.
			if _, err := os.Lstat(in.control); !os.IsNotExist(err) {
				t.Errorf("control socket still there after the final stop: %v", err)
			}
		})
	}
}

// A control socket in a directory others can enter is refused before the
// service is touched, and the error says what to do.
func TestControlRefusesOpenDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctl := filepath.Join(dir, "ctl")
	if err := os.Mkdir(ctl, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Chmod(ctl, 0o755) // whatever the umask
	p := proctest.Start(t, "server", []string{serverConfig{Dir: dir, Control: filepath.Join(ctl, "c.sock")}.env()})
	st, _ := p.Wait(20 * time.Second)
	if st == nil {
		t.Fatal("still running with a control directory open to others")
	}
	out := p.Output()
	if st.ExitCode() == 0 || !strings.Contains(out, "chmod 700") {
		t.Errorf("exit %d, output:\n%s\nwant a failure that says chmod 700", st.ExitCode(), out)
	}
}

// A process of another user is refused by the control socket even if it
// gets to it (here: with CAP_DAC_OVERRIDE through the 0700 directory): it
// receives no descriptor, and the service goes on.
func TestControlRefusesOtherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		requireIntegration(t, "TestControlRefusesOtherUser needs root to start a process of another uid")
	}
	in := startInstances(t, serverConfig{})
	// The test binary sits in a directory only root may enter, and exec
	// happens after the switch to the other uid: run a copy it can reach.
	exe := reachableCopy(t)
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "DIAL_CONTROL="+in.control)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
		AmbientCaps: []uintptr{capDacOverride},
	}
	p := proctest.StartCommand(t, "dial-control", cmd)
	if _, err := p.Wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if out := p.Output(); !strings.Contains(out, "uid=65534 closed") {
		t.Errorf("the other user's client saw:\n%s\nwant the connection closed without a word", out)
	}
	if out := in.procs[0].Output(); !strings.Contains(out, "refused a connection from another user") {
		t.Errorf("no refusal in the server's log:\n%s", out)
	}
	// Same user, but a takeover for a pid that is not the caller's: told
	// why, nothing handed over.
	cmd = exec.Command(exe)
	cmd.Env = append(os.Environ(), "DIAL_CONTROL="+in.control, "DIAL_PID=1")
	p = proctest.StartCommand(t, "dial-control", cmd)
	if _, err := p.Wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
	if out := p.Output(); !strings.Contains(out, "abort") || !strings.Contains(out, "takeover asked for pid 1") {
		t.Errorf("a takeover for another pid got:\n%s\nwant an abort that says why", out)
	}
	resp, err := controlClient.Get("http://" + in.tcp + "/")
	if err != nil {
		t.Fatalf("the service stopped answering: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "gen=1 ") {
		t.Errorf("after the refusals the service answers %q; want generation 1", b)
	}
}

// reachableCopy copies the test binary where any user may run it.
func reachableCopy(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "baton-exe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "baton.test")
	copyTestBinary(t, exe)
	return exe
}

// capDacOverride is CAP_DAC_OVERRIDE: it lets the other user's process
// through the owner-only directory, so the socket's own check is tested.
const capDacOverride = 1

// dialControlMain connects to DIAL_CONTROL, asks for a takeover for
// DIAL_PID (default its own pid), and prints what came back: the type of
// the first frame, or "closed".
func dialControlMain() {
	c, err := net.Dial("unix", os.Getenv("DIAL_CONTROL"))
	if err != nil {
		fmt.Println("dial:", err)
		os.Exit(1)
	}
	pid := os.Getpid()
	if v := os.Getenv("DIAL_PID"); v != "" {
		pid, _ = strconv.Atoi(v)
	}
	frame := []byte{'T', 0, 0, 0, 4, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(frame[5:], uint32(pid))
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(frame); err != nil {
		// A refusal can close the connection before the request is
		// written: EPIPE then says the same as EOF.
		fmt.Printf("uid=%d closed (write: %v)\n", os.Getuid(), err)
		return
	}
	var h [5]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		fmt.Printf("uid=%d closed (%v)\n", os.Getuid(), err)
		return
	}
	body := make([]byte, binary.BigEndian.Uint32(h[1:]))
	io.ReadFull(c, body)
	if h[0] == 'X' {
		fmt.Printf("uid=%d abort: %s\n", os.Getuid(), body)
		return
	}
	fmt.Printf("uid=%d frame %q\n", os.Getuid(), h[0])
}

// requireIntegration fails the test when make test asked for every test to
// run (BATON_REQUIRE_INTEGRATION=1), and skips it, saying why, otherwise.
func requireIntegration(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("BATON_REQUIRE_INTEGRATION") == "1" {
		t.Fatalf("cannot run: %s (BATON_REQUIRE_INTEGRATION=1)", why)
	}
	t.Skipf("skipped: %s", why)
}
