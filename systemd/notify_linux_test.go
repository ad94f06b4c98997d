package systemd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// wait bounds every wait for something that should happen at once.
const wait = 10 * time.Second

var abstractSeq atomic.Int64

// fakeManager is the receiving end of a notification socket, as systemd
// runs it: a datagram socket with SO_PASSCRED, read with recvmsg.
type fakeManager struct {
	addr string
	conn *net.UnixConn
}

// notification is one datagram as the fake manager received it.
type notification struct {
	fields []string
	fds    []int // closed by the test's cleanup
	pid    int32 // the sender, from SCM_CREDENTIALS
}

func newFakeManager(t *testing.T, abstract bool) *fakeManager {
	t.Helper()
	addr := filepath.Join(t.TempDir(), "notify")
	if abstract {
		addr = fmt.Sprintf("@baton-systemd-test/%d/%d", os.Getpid(), abstractSeq.Add(1))
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: addr, Net: "unixgram"})
	if err != nil {
		t.Fatalf("ListenUnixgram(%q): %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	rc, err := conn.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) }); err != nil || serr != nil {
		t.Fatalf("setsockopt(SO_PASSCRED): %v, %v", err, serr)
	}
	return &fakeManager{addr: addr, conn: conn}
}

// receive reads one notification, waiting at most timeout. The received
// descriptors are closed when the test ends.
func (m *fakeManager) receive(t *testing.T, timeout time.Duration) (notification, error) {
	buf := make([]byte, MaxMessageSize+1)
	oob := make([]byte, unix.CmsgSpace(MaxFDs*4)+unix.CmsgSpace(unix.SizeofUcred))
	m.conn.SetReadDeadline(time.Now().Add(timeout))
	n, oobn, flags, _, err := m.conn.ReadMsgUnix(buf, oob)
	if err != nil {
		return notification{}, err
	}
	var msg notification
	cmsgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return msg, err
	}
	for _, c := range cmsgs {
		switch {
		case c.Header.Level == unix.SOL_SOCKET && c.Header.Type == unix.SCM_RIGHTS:
			fds, err := unix.ParseUnixRights(&c)
			if err != nil {
				return msg, err
			}
			for _, fd := range fds {
				t.Cleanup(func() { unix.Close(fd) })
			}
			msg.fds = append(msg.fds, fds...)
		case c.Header.Level == unix.SOL_SOCKET && c.Header.Type == unix.SCM_CREDENTIALS:
			cred, err := unix.ParseUnixCredentials(&c)
			if err != nil {
				return msg, err
			}
			msg.pid = cred.Pid
		}
	}
	if flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 || n > MaxMessageSize {
		return msg, fmt.Errorf("truncated notification (flags %#x, %d bytes)", flags, n)
	}
	msg.fields = strings.Split(string(buf[:n]), "\n")
	return msg, nil
}

// expect receives one notification and checks its fields, its number of
// descriptors and its sender.
func (m *fakeManager) expect(t *testing.T, fields []string, nfds int) notification {
	t.Helper()
	msg, err := m.receive(t, wait)
	if err != nil {
		t.Fatalf("receiving a notification: %v", err)
	}
	if !slices.Equal(msg.fields, fields) || len(msg.fds) != nfds {
		t.Fatalf("received %q with %d descriptors, want %q with %d", msg.fields, len(msg.fds), fields, nfds)
	}
	if msg.pid != int32(os.Getpid()) {
		t.Fatalf("notification sent by pid %d, want this process, %d", msg.pid, os.Getpid())
	}
	return msg
}

func TestNotifierSends(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		call   func(*Notifier) error
		fields []string
	}{
		{"Ready", (*Notifier).Ready, []string{"READY=1"}},
		{"Stopping", (*Notifier).Stopping, []string{"STOPPING=1"}},
		{"Status", func(n *Notifier) error { return n.Status("serving: 3 connections") }, []string{"STATUS=serving: 3 connections"}},
		{"MainPID", func(n *Notifier) error { return n.MainPID(4242) }, []string{"MAINPID=4242"}},
		{"Watchdog", (*Notifier).Watchdog, []string{"WATCHDOG=1"}},
		{"FDStoreRemove", func(n *Notifier) error { return n.FDStoreRemove("http") }, []string{"FDSTOREREMOVE=1", "FDNAME=http"}},
		{"Send", func(n *Notifier) error { return n.Send("EXTEND_TIMEOUT_USEC=5000000", "STATUS=slow") }, []string{"EXTEND_TIMEOUT_USEC=5000000", "STATUS=slow"}},
	} {
		for _, abstract := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/abstract=%v", tc.name, abstract), func(t *testing.T) {
				t.Parallel()
				m := newFakeManager(t, abstract)
				if err := tc.call(NewNotifierFrom(m.addr)); err != nil {
					t.Fatalf("%s to %s: %v", tc.name, m.addr, err)
				}
				m.expect(t, tc.fields, 0)
			})
		}
	}
}

func TestNotifierReloading(t *testing.T) {
	t.Parallel()
	m := newFakeManager(t, false)
	before := monotonicNow(t)
	if err := NewNotifierFrom(m.addr).Reloading(); err != nil {
		t.Fatalf("Reloading: %v", err)
	}
	after := monotonicNow(t)
	msg, err := m.receive(t, wait)
	if err != nil {
		t.Fatalf("receiving RELOADING=1: %v", err)
	}
	if len(msg.fields) != 2 || msg.fields[0] != "RELOADING=1" || !strings.HasPrefix(msg.fields[1], "MONOTONIC_USEC=") {
		t.Fatalf("Reloading sent %q, want RELOADING=1 and MONOTONIC_USEC=", msg.fields)
	}
	usec, err := strconv.ParseUint(strings.TrimPrefix(msg.fields[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || usec < before || usec > after {
		t.Fatalf("Reloading sent %s, want CLOCK_MONOTONIC in µs, between %d and %d", msg.fields[1], before, after)
	}
}

func monotonicNow(t *testing.T) uint64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return uint64(ts.Nano() / 1e3)
}

// rawFd runs f with the descriptor behind c, the way callers are told to
// get one: through SyscallConn, not Fd.
func rawFd(t *testing.T, c syscall.Conn, f func(fd int)) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Control(func(fd uintptr) { f(int(fd)) }); err != nil {
		t.Fatal(err)
	}
}

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestNotifierFDStore(t *testing.T) {
	t.Parallel()
	m := newFakeManager(t, false)
	n := NewNotifierFrom(m.addr)
	ln := listenTCP(t)
	uc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })

	var tcpFd, udpFd int
	rawFd(t, ln.(*net.TCPListener), func(fd int) {
		tcpFd = fd
		rawFd(t, uc.(*net.UDPConn), func(fd int) {
			udpFd = fd
			if err := n.FDStore("http", tcpFd); err != nil {
				t.Errorf("FDStore(http, %d): %v", tcpFd, err)
			}
			if err := n.FDStore("pair", tcpFd, udpFd); err != nil {
				t.Errorf("FDStore(pair, %d, %d): %v", tcpFd, udpFd, err)
			}
		})
	})
	if t.Failed() {
		t.FailNow()
	}
	one := m.expect(t, []string{"FDSTORE=1", "FDNAME=http"}, 1)
	two := m.expect(t, []string{"FDSTORE=1", "FDNAME=pair"}, 2)
	for _, c := range []struct {
		got  int
		want net.Addr
	}{{one.fds[0], ln.Addr()}, {two.fds[0], ln.Addr()}, {two.fds[1], uc.LocalAddr()}} {
		network, addr, _, err := Activated{Fd: c.got}.Addr()
		if err != nil || network != c.want.Network() || addr != c.want.String() {
			t.Errorf("received descriptor %d is %s %s (%v), want %s %s", c.got, network, addr, err, c.want.Network(), c.want)
		}
	}
	// Same socket, not merely the same address: the same inode.
	var got, want unix.Stat_t
	if err := unix.Fstat(one.fds[0], &got); err != nil {
		t.Fatal(err)
	}
	rawFd(t, ln.(*net.TCPListener), func(fd int) {
		if err := unix.Fstat(fd, &want); err != nil {
			t.Error(err)
		}
	})
	if got.Ino != want.Ino || got.Dev != want.Dev {
		t.Errorf("received descriptor has inode %d:%d, want the listener's %d:%d", got.Dev, got.Ino, want.Dev, want.Ino)
	}
}

func TestNotifierBarrier(t *testing.T) {
	t.Parallel()
	m := newFakeManager(t, true)
	var released atomic.Bool
	errc := make(chan error, 1)
	go func() {
		msg, err := m.receive(t, wait)
		if err == nil && (!slices.Equal(msg.fields, []string{"BARRIER=1"}) || len(msg.fds) != 1) {
			err = fmt.Errorf("received %q with %d descriptors, want BARRIER=1 with 1", msg.fields, len(msg.fds))
		}
		if err == nil {
			// Take a while, as a busy manager would: Barrier must wait.
			time.Sleep(100 * time.Millisecond)
			released.Store(true)
			err = unix.Close(msg.fds[0])
		}
		errc <- err
	}()
	start := time.Now()
	err := NewNotifierFrom(m.addr).Barrier(wait)
	if err != nil {
		t.Fatalf("Barrier(%v) = %v after %v, want nil", wait, err, time.Since(start))
	}
	if !released.Load() {
		t.Fatalf("Barrier returned after %v, before the manager closed the pipe", time.Since(start))
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("fake manager: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("fake manager did not finish")
	}
}

func TestNotifierBarrierTimeout(t *testing.T) {
	t.Parallel()
	m := newFakeManager(t, false)
	errc := make(chan error, 1)
	go func() {
		// Receive and keep the descriptor open until the test ends: a
		// manager that never answers.
		_, err := m.receive(t, wait)
		errc <- err
	}()
	const timeout = 300 * time.Millisecond
	start := time.Now()
	err := NewNotifierFrom(m.addr).Barrier(timeout)
	elapsed := time.Since(start)
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.Contains(err.Error(), "did not answer within 300ms") {
		t.Fatalf("Barrier(%v) against a manager that never answers = %v, want an error wrapping os.ErrDeadlineExceeded", timeout, err)
	}
	if elapsed < timeout || elapsed > wait {
		t.Fatalf("Barrier(%v) timed out after %v", timeout, elapsed)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("fake manager: %v", err)
		}
	case <-time.After(wait):
		t.Fatal("fake manager received nothing")
	}
}

func TestNotifierNobodyListening(t *testing.T) {
	t.Parallel()
	n := NewNotifierFrom(filepath.Join(t.TempDir(), "nobody"))
	if err := n.Ready(); !errors.Is(err, unix.ENOENT) {
		t.Errorf("Ready to a missing socket = %v, want ENOENT", err)
	}
	start := time.Now()
	if err := n.Barrier(wait); !errors.Is(err, unix.ENOENT) {
		t.Errorf("Barrier to a missing socket = %v after %v, want ENOENT at once", err, time.Since(start))
	}
	if err := NewNotifierFrom("relative").Ready(); err == nil || !strings.Contains(err.Error(), "absolute path") {
		t.Errorf(`Ready to "relative" = %v, want an error about the address`, err)
	}
}

func TestNotifierRejects(t *testing.T) {
	t.Parallel()
	m := newFakeManager(t, false)
	n := NewNotifierFrom(m.addr)
	tooMany := make([]int, MaxFDs+1)
	for _, tc := range []struct {
		name string
		call func() error
	}{
		{"Send()", func() error { return n.Send() }},
		{"Send(READY)", func() error { return n.Send("READY") }},
		{"Send(=1)", func() error { return n.Send("=1") }},
		{"Send with a newline", func() error { return n.Send("STATUS=a\nREADY=1") }},
		{"Send with NUL", func() error { return n.Send("STATUS=a\x00") }},
		{"Send(BARRIER=1, READY=1)", func() error { return n.Send("BARRIER=1", "READY=1") }},
		{"Status with a newline", func() error { return n.Status("two\nlines") }},
		{"MainPID(0)", func() error { return n.MainPID(0) }},
		{"MainPID(-1)", func() error { return n.MainPID(-1) }},
		{"FDStore without fds", func() error { return n.FDStore("http") }},
		{"FDStore(a:b)", func() error { return n.FDStore("a:b", 0) }},
		{"FDStore empty name", func() error { return n.FDStore("", 0) }},
		{"FDStoreRemove bad name", func() error { return n.FDStoreRemove("bad\x01") }},
		{"FDStoreRemove empty name", func() error { return n.FDStoreRemove("") }},
		{"SendFDs(-1)", func() error { return n.SendFDs([]int{-1}, "X=1") }},
		{"SendFDs too many", func() error { return n.SendFDs(tooMany, "X=1") }},
	} {
		if err := tc.call(); err == nil {
			t.Errorf("%s = nil, want an error", tc.name)
		}
	}
	// Nothing was sent: the next notification is the first one.
	if err := n.Ready(); err != nil {
		t.Fatal(err)
	}
	m.expect(t, []string{"READY=1"}, 0)
}

func TestNewNotifier(t *testing.T) {
	m := newFakeManager(t, false)
	t.Setenv("NOTIFY_SOCKET", m.addr)
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	n, err := NewNotifier()
	if err != nil || n == nil {
		t.Fatalf("NewNotifier() with NOTIFY_SOCKET=%s = %v, %v; want a Notifier", m.addr, n, err)
	}
	if d, ok := n.WatchdogInterval(); d != 30*time.Second || !ok {
		t.Errorf("WatchdogInterval() = %v, %v; want 30s, true", d, ok)
	}
	if err := n.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	m.expect(t, []string{"READY=1"}, 0)
	if got := os.Getenv("NOTIFY_SOCKET"); got != m.addr {
		t.Errorf("after NewNotifier, NOTIFY_SOCKET=%q, want it left as %q", got, m.addr)
	}

	t.Setenv("WATCHDOG_PID", "1")
	if n, err := NewNotifier(); err != nil {
		t.Fatal(err)
	} else if d, ok := n.WatchdogInterval(); ok {
		t.Errorf("WatchdogInterval() with WATCHDOG_PID=1 = %v, true; want none", d)
	}
	if d, ok := NewNotifierFrom(m.addr).WatchdogInterval(); ok {
		t.Errorf("NewNotifierFrom(...).WatchdogInterval() = %v, true; want none", d)
	}

	for _, bad := range []string{"relative/path", "vsock:2:1", "@"} {
		t.Setenv("NOTIFY_SOCKET", bad)
		if n, err := NewNotifier(); n != nil || err == nil {
			t.Errorf("NewNotifier() with NOTIFY_SOCKET=%q = %v, %v; want an error", bad, n, err)
		}
	}
}
