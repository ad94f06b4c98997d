package systemd

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func init() { helpers["listeners"] = listenersHelper }

func TestActivatedAddr(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	type conn interface {
		syscall.Conn
		Close() error
	}
	check := func(name string, c conn, addr net.Addr, listening bool) {
		t.Helper()
		t.Cleanup(func() { c.Close() })
		rawFd(t, c, func(fd int) {
			network, address, l, err := Activated{Name: name, Fd: fd}.Addr()
			if err != nil || network != addr.Network() || address != addr.String() || l != listening {
				t.Errorf("%s: Addr() = %q, %q, %v, %v; want %q, %q, %v", name, network, address, l, err, addr.Network(), addr.String(), listening)
			}
		})
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}

	ln := listenTCP(t)
	check("tcp4 listener", ln.(*net.TCPListener), ln.Addr(), true)
	c, err := net.Dial("tcp", ln.Addr().String())
	must(err)
	check("tcp4 connection", c.(*net.TCPConn), c.LocalAddr(), false)

	if ln6, err := net.Listen("tcp6", "[::1]:0"); err == nil {
		check("tcp6 listener", ln6.(*net.TCPListener), ln6.Addr(), true)
	} else {
		t.Logf("no IPv6 loopback: %v", err)
	}
	// ":0" is a dual-stack [::] socket where IPv6 exists, 0.0.0.0 elsewhere.
	lnAny, err := net.Listen("tcp", ":0")
	must(err)
	check("tcp any listener", lnAny.(*net.TCPListener), lnAny.Addr(), true)

	var lc net.ListenConfig
	lc.SetMultipathTCP(true) // falls back to TCP where the kernel has no MPTCP
	lnMP, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	must(err)
	check("mptcp listener", lnMP.(*net.TCPListener), lnMP.Addr(), true)

	uc, err := net.ListenPacket("udp", "127.0.0.1:0")
	must(err)
	check("udp", uc.(*net.UDPConn), uc.LocalAddr(), false)

	ul, err := net.Listen("unix", filepath.Join(dir, "stream.sock"))
	must(err)
	check("unix listener", ul.(*net.UnixListener), ul.Addr(), true)

	ug, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "dgram.sock"), Net: "unixgram"})
	must(err)
	check("unixgram", ug, ug.LocalAddr(), false)

	up, err := net.Listen("unixpacket", filepath.Join(dir, "packet.sock"))
	must(err)
	check("unixpacket listener", up.(*net.UnixListener), up.Addr(), true)

	ua, err := net.Listen("unix", fmt.Sprintf("@baton-systemd-test/%d/addr", os.Getpid()))
	must(err)
	check("abstract unix listener", ua.(*net.UnixListener), ua.Addr(), true)

	pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	must(err)
	t.Cleanup(func() { unix.Close(pair[0]); unix.Close(pair[1]) })
	if network, address, l, err := (Activated{Fd: pair[0]}).Addr(); network != "unix" || address != "" || l || err != nil {
		t.Errorf("unnamed socketpair: Addr() = %q, %q, %v, %v; want unix, \"\", false", network, address, l, err)
	}

	r, w, err := os.Pipe()
	must(err)
	t.Cleanup(func() { r.Close(); w.Close() })
	rawFd(t, r, func(fd int) {
		_, _, _, err := Activated{Name: "fifo", Fd: fd}.Addr()
		if !errors.Is(err, unix.ENOTSOCK) || !strings.Contains(err.Error(), "(fifo)") {
			t.Errorf("pipe: Addr() error = %v, want one naming the descriptor and wrapping ENOTSOCK", err)
		}
	})
	if _, _, _, err := (Activated{Fd: -1}).Addr(); !errors.Is(err, unix.EBADF) {
		t.Errorf("fd -1: Addr() error = %v, want EBADF", err)
	}

	// Sockets, but none the net package would Listen on.
	if fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE); err == nil {
		t.Cleanup(func() { unix.Close(fd) })
		if _, _, _, err := (Activated{Fd: fd}).Addr(); err == nil || !strings.Contains(err.Error(), "unsupported socket address") {
			t.Errorf("netlink socket: Addr() error = %v, want unsupported", err)
		}
	} else {
		t.Logf("no netlink socket: %v", err)
	}
	if fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDPLITE); err == nil {
		t.Cleanup(func() { unix.Close(fd) })
		if _, _, _, err := (Activated{Fd: fd}).Addr(); err == nil || !strings.Contains(err.Error(), "unsupported IP socket") {
			t.Errorf("UDP-Lite socket: Addr() error = %v, want unsupported", err)
		}
	} else {
		t.Logf("no UDP-Lite socket: %v", err)
	}
}

// listenersReport is what the listeners helper saw, as JSON on its stdout.
type listenersReport struct {
	Err           string
	Activated     []reportedFd
	Again         int               // descriptors a second Listeners call returned
	Env           map[string]string // LISTEN_* variables still set afterwards
	CloexecBefore []bool            // FD_CLOEXEC of descriptors 3... before Listeners
	CloexecAfter  []bool            // and after
}

type reportedFd struct {
	Name, Network, Address string
	Fd                     int
	Listening              bool
	AddrErr                string
}

// listenersHelper is the child of TestListeners: it runs Listeners as the
// first thing a program does and reports what it got.
func listenersHelper() int {
	// LISTEN_PID must be the pid of the process that reads it, which the
	// parent cannot know before it starts the child: the child fills it in.
	if os.Getenv("LISTEN_PID_SELF") == "1" {
		os.Setenv("LISTEN_PID", strconv.Itoa(os.Getpid()))
	}
	n, _ := strconv.Atoi(os.Getenv("LISTEN_EXTRA_FILES"))
	cloexec := func() []bool {
		var flags []bool
		for fd := ListenFDsStart; fd < ListenFDsStart+n; fd++ {
			v, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
			flags = append(flags, err == nil && v&unix.FD_CLOEXEC != 0)
		}
		return flags
	}
	var rep listenersReport
	rep.CloexecBefore = cloexec()
	acts, err := Listeners()
	rep.CloexecAfter = cloexec()
	if err != nil {
		rep.Err = err.Error()
	}
	for _, a := range acts {
		r := reportedFd{Name: a.Name, Fd: a.Fd}
		r.Network, r.Address, r.Listening, err = a.Addr()
		if err != nil {
			r.AddrErr = err.Error()
		}
		rep.Activated = append(rep.Activated, r)
	}
	again, _ := Listeners()
	rep.Again = len(again)
	rep.Env = map[string]string{}
	for _, v := range listenVars {
		if val, ok := os.LookupEnv(v); ok {
			rep.Env[v] = val
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(rep); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// runListenersHelper starts the test binary as listenersHelper with files
// as descriptors 3 and up and env added to a scrubbed environment.
func runListenersHelper(t *testing.T, files []*os.File, env ...string) listenersReport {
	t.Helper()
	timeout := 30 * time.Second
	if dl, ok := t.Deadline(); ok {
		timeout = min(timeout, time.Until(dl)*9/10)
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.Contains(listenVars, k) && k != "NOTIFY_SOCKET" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, helperEnv+"=listeners", "LISTEN_EXTRA_FILES="+strconv.Itoa(len(files)))
	cmd.Env = append(cmd.Env, env...)
	if os.Getenv("GORACE") == "" {
		// Under -race, a child would sleep a second before exiting.
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0")
	}
	// ExtraFiles calls Fd, which makes these duplicates blocking; that is
	// harmless here, where nobody accepts on the originals.
	cmd.ExtraFiles = files
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 5 * time.Second
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("listeners helper: %v\nstderr:\n%s", err, stderr.Bytes())
	}
	var rep listenersReport
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatalf("listeners helper printed %q: %v", out, err)
	}
	return rep
}

func TestListeners(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ln := listenTCP(t)
	uc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	ul, err := net.Listen("unix", filepath.Join(dir, "ctl.sock"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ul.Close() })
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close(); w.Close() })

	var files []*os.File
	for _, c := range []interface{ File() (*os.File, error) }{ln.(*net.TCPListener), uc.(*net.UDPConn), ul.(*net.UnixListener)} {
		f, err := c.File()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		files = append(files, f)
	}
	files = append(files, r)

	t.Run("for this process", func(t *testing.T) {
		rep := runListenersHelper(t, files, "LISTEN_PID_SELF=1", "LISTEN_PIDFDID=1", "LISTEN_FDS=4", "LISTEN_FDNAMES=http:dns:ctl:fifo")
		if rep.Err != "" {
			t.Fatalf("Listeners() in the child: %s", rep.Err)
		}
		want := []reportedFd{
			{Name: "http", Fd: 3, Network: "tcp", Address: ln.Addr().String(), Listening: true},
			{Name: "dns", Fd: 4, Network: "udp", Address: uc.LocalAddr().String()},
			{Name: "ctl", Fd: 5, Network: "unix", Address: ul.Addr().String(), Listening: true},
			{Name: "fifo", Fd: 6},
		}
		if len(rep.Activated) != len(want) {
			t.Fatalf("Listeners() in the child = %+v, want %+v", rep.Activated, want)
		}
		for i, got := range rep.Activated {
			if i == 3 {
				if !strings.Contains(got.AddrErr, "non-socket") || got.Name != "fifo" || got.Fd != 6 {
					t.Errorf("descriptor 6 = %+v, want fifo with an Addr error: not a socket", got)
				}
				continue
			}
			if got != want[i] {
				t.Errorf("descriptor %d = %+v, want %+v", i, got, want[i])
			}
		}
		if !slices.Equal(rep.CloexecBefore, []bool{false, false, false, false}) || !slices.Equal(rep.CloexecAfter, []bool{true, true, true, true}) {
			t.Errorf("close-on-exec of descriptors 3-6: %v before Listeners, %v after; want all off, then all on", rep.CloexecBefore, rep.CloexecAfter)
		}
		if len(rep.Env) != 0 || rep.Again != 0 {
			t.Errorf("after Listeners(): environment still has %v, a second call returned %d descriptors; want none and none", rep.Env, rep.Again)
		}
	})

	t.Run("for another process", func(t *testing.T) {
		rep := runListenersHelper(t, files, "LISTEN_PID=1", "LISTEN_FDS=4", "LISTEN_FDNAMES=http:dns:ctl:fifo")
		if rep.Err != "" || len(rep.Activated) != 0 {
			t.Fatalf("Listeners() with LISTEN_PID=1 = %+v, %q; want nothing", rep.Activated, rep.Err)
		}
		if !slices.Equal(rep.CloexecAfter, []bool{false, false, false, false}) {
			t.Errorf("close-on-exec of descriptors 3-6 after Listeners: %v, want them untouched", rep.CloexecAfter)
		}
		if len(rep.Env) != 0 {
			t.Errorf("after Listeners(): environment still has %v", rep.Env)
		}
	})
}
