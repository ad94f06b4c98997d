//go:build linux

package baton_test

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/proctest"
)

// notification is one datagram a fake service manager received.
type notification struct {
	pid    int // the sender, from SCM_CREDENTIALS
	fields []string
	fds    int
}

func (n notification) has(field string) bool {
	for _, f := range n.fields {
		if f == field {
			return true
		}
	}
	return false
}

func (n notification) value(key string) string {
	for _, f := range n.fields {
		if k, v, ok := strings.Cut(f, "="); ok && k == key {
			return v
		}
	}
	return ""
}

// fakeManager is the receiving end of NOTIFY_SOCKET, as systemd has it: it
// learns each sender's pid from the kernel and closes every descriptor it
// receives (which is what releases a BARRIER=1).
type fakeManager struct {
	path string
	c    chan notification
}

func newFakeManager(t *testing.T) *fakeManager {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := conn.SyscallConn()
	rc.Control(func(fd uintptr) {
		err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_PASSCRED, 1)
	})
	if err != nil {
		t.Fatal(err)
	}
	m := &fakeManager{path: path, c: make(chan notification, 256)}
	go func() {
		buf := make([]byte, 4096)
		oob := make([]byte, 4096)
		for {
			n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
			if err != nil {
				close(m.c)
				return
			}
			var note notification
			msgs, _ := syscall.ParseSocketControlMessage(oob[:oobn])
			for _, cm := range msgs {
				if cred, err := syscall.ParseUnixCredentials(&cm); err == nil {
					note.pid = int(cred.Pid)
				}
				if fds, err := syscall.ParseUnixRights(&cm); err == nil {
					note.fds += len(fds)
					for _, fd := range fds {
						syscall.Close(fd)
					}
				}
			}
			note.fields = strings.Split(strings.TrimRight(string(buf[:n]), "\n"), "\n")
			m.c <- note
		}
	}()
	t.Cleanup(func() { conn.Close() })
	return m
}

// expect returns the first notification that has field, failing the test
// if none comes in time. Earlier ones are returned too, for inspection.
func (m *fakeManager) expect(t *testing.T, field string) (notification, []notification) {
	t.Helper()
	var seen []notification
	timeout := time.After(20 * time.Second)
	for {
		select {
		case n, ok := <-m.c:
			if !ok {
				t.Fatalf("notification socket closed while waiting for %s", field)
			}
			if n.has(field) {
				return n, seen
			}
			seen = append(seen, n)
		case <-timeout:
			t.Fatalf("no %s notification in 20s; got %v", field, seen)
		}
	}
}

// Under systemd the upgrader speaks for the service with no code of the
// application's: READY=1 at start; on upgrade RELOADING=1, then the
// successor named main process with READY=1 and a barrier, all from the
// incumbent (which NotifyAccess=main lets through); after a failed upgrade
// READY=1 again; STOPPING=1 on the final stop. The successor is started as
// a child of the incumbent's parent, which systemd then treats as its own.
func TestSystemdNotifyHandover(t *testing.T) {
	t.Parallel()
	m := newFakeManager(t)
	s := startServer(t, serverConfig{FailGen: 3, Fail: failExit}, "NOTIFY_SOCKET="+m.path)
	n, _ := m.expect(t, "READY=1")
	if n.pid != s.pid || !strings.Contains(n.value("STATUS"), "generation 1") {
		t.Errorf("first READY=1 from pid %d with %q; want from generation 1 (pid %d) with its status", n.pid, n.fields, s.pid)
	}

	incumbent := s.pid
	// A slow request keeps the incumbent draining, so the successor could
	// not have been reparented yet when its parent is checked.
	slow := make(chan error, 1)
	go func() {
		_, err := s.get("/?delay=1s")
		slow <- err
	}()
	time.Sleep(200 * time.Millisecond)
	s.mustUpgrade()
	if !proctest.Alive(incumbent) {
		t.Fatalf("the incumbent %d exited before the slow request ended", incumbent)
	}
	if got := proctest.Parent(s.pid); got != os.Getpid() {
		t.Errorf("the successor's parent is %d; want %d, the incumbent's own parent (CLONE_PARENT)", got, os.Getpid())
	}
	r, _ := m.expect(t, "RELOADING=1")
	if r.pid != incumbent || r.value("MONOTONIC_USEC") == "" {
		t.Errorf("RELOADING=1 from pid %d, fields %q; want from pid %d with MONOTONIC_USEC", r.pid, r.fields, incumbent)
	}
	h, _ := m.expect(t, "MAINPID="+strconv.Itoa(s.pid))
	if h.pid != incumbent || !h.has("READY=1") {
		t.Errorf("MAINPID=%d came from pid %d with %q; want from the incumbent %d, with READY=1", s.pid, h.pid, h.fields, incumbent)
	}
	b, _ := m.expect(t, "BARRIER=1")
	if b.pid != incumbent || b.fds != 1 {
		t.Errorf("BARRIER=1 from pid %d with %d fds; want from %d with the pipe", b.pid, b.fds, incumbent)
	}
	if err := <-slow; err != nil {
		t.Errorf("the slow request across the upgrade: %v", err)
	}

	// Generation 3 exits at once: the service manager hears that
	// generation 2 still serves.
	if err := syscall.Kill(s.pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if _, err := s.proc.WaitLine("upgrade-failed gen=2", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	m.expect(t, "RELOADING=1")
	f, _ := m.expect(t, "READY=1")
	if f.pid != s.pid || !strings.Contains(f.value("STATUS"), "upgrade failed") {
		t.Errorf("after the failed upgrade: %q from pid %d; want READY=1 and a status that says the upgrade failed, from %d", f.fields, f.pid, s.pid)
	}

	s.stop()
	st, _ := m.expect(t, "STOPPING=1")
	if st.pid != s.pid {
		t.Errorf("STOPPING=1 from pid %d; want from the last generation %d", st.pid, s.pid)
	}
}

// With Options.FDStore the listening sockets are pushed to the service
// manager's descriptor store when the generation is ready.
func TestSystemdFDStore(t *testing.T) {
	t.Parallel()
	m := newFakeManager(t)
	s := startServer(t, serverConfig{FDStore: true}, "NOTIFY_SOCKET="+m.path)
	n, _ := m.expect(t, "FDSTORE=1")
	// TCP, UDP and the unix listener; not the data file.
	if n.value("FDNAME") != "baton" || n.fds != 3 || n.pid != s.pid {
		t.Errorf("FDSTORE message %q with %d fds from pid %d; want FDNAME=baton with 3 listeners from %d", n.fields, n.fds, n.pid, s.pid)
	}
	s.stop()
}

// A first generation started by socket activation serves the socket
// systemd passed for the address it asks for, and passes it on.
func TestSocketActivation(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f, err := ln.(*net.TCPListener).File()
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	defer f.Close()

	cfg := serverConfig{Dir: t.TempDir(), Listen: addr}
	// systemd sets LISTEN_PID to the pid it execs; "exec" in sh keeps it.
	cmd := exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=1 LISTEN_FDNAMES=web.socket exec "$0"`, os.Args[0])
	cmd.Env = append(os.Environ(), cfg.env())
	cmd.ExtraFiles = []*os.File{f}
	s := &server{t: t, proc: proctest.StartCommand(t, "server", cmd), cfg: cfg, dir: cfg.Dir}
	s.waitReady(1)
	// Had the server not adopted it, its own bind would have failed:
	// the socket is still open here and in the server.
	f.Close()
	if s.tcp != addr {
		t.Fatalf("serving %s; want the activated socket's %s", s.tcp, addr)
	}
	env, err := s.get("/env")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(env, "LISTEN_") {
		t.Errorf("a child of the server inherited the activation variables:\n%s", env)
	}
	s.mustUpgrade()
	if s.tcp != addr {
		t.Errorf("generation 2 serves %s; want the activated socket %s", s.tcp, addr)
	}
	if pid := s.servingPid(); pid != s.pid {
		t.Errorf("pid %d answered; want generation 2 (%d)", pid, s.pid)
	}
	s.stop()
}

// With a probation, systemd hears of the successor only once it passed:
// RELOADING=1 when the upgrade starts, and MAINPID=<successor> with
// READY=1 (which ends a "systemctl reload" of Type=notify-reload) no
// sooner than the window after it, although the successor serves from its
// ready on. A successor that dies on probation is never named: the
// incumbent sends READY=1 again with a STATUS= that says so.
func TestSystemdProbation(t *testing.T) {
	t.Parallel()
	const window = 2 * time.Second
	m := newFakeManager(t)
	// HandleSignals: a SIGHUP right after READY=1 may reach the successor
	// a moment before it hears that it passed (MAINPID goes to systemd
	// first, as after an ack); it upgrades once it has.
	s := startServer(t, serverConfig{Probation: window, FailGen: 3, Fail: failExitAfter, FailAfter: 100 * time.Millisecond, HandleSignals: true}, "NOTIFY_SOCKET="+m.path)
	m.expect(t, "READY=1")

	incumbent := s.pid
	if err := syscall.Kill(incumbent, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m.expect(t, "RELOADING=1")
	reloading := time.Now()
	s.waitReady(2)
	h, before := m.expect(t, "MAINPID="+strconv.Itoa(s.pid))
	if d := time.Since(reloading); d < window {
		t.Errorf("MAINPID=%d %v after RELOADING=1; want no sooner than the probation, %v", s.pid, d, window)
	}
	if h.pid != incumbent || !h.has("READY=1") {
		t.Errorf("MAINPID=%d came from pid %d with %q; want from the incumbent %d, with READY=1", s.pid, h.pid, h.fields, incumbent)
	}
	for _, n := range before {
		if n.has("READY=1") {
			t.Errorf("READY=1 (%q from pid %d) during the probation: a reload would have ended before it passed", n.fields, n.pid)
		}
	}
	m.expect(t, "BARRIER=1")

	// Generation 3 dies 100ms after its ready, on probation.
	gen2 := s.pid
	if err := syscall.Kill(gen2, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	m.expect(t, "RELOADING=1")
	f, before := m.expect(t, "READY=1")
	if f.pid != gen2 || !strings.Contains(f.value("STATUS"), "failed on probation") {
		t.Errorf("after the failed probation: %q from pid %d; want READY=1 and a status that says the successor failed on probation, from %d", f.fields, f.pid, gen2)
	}
	for _, n := range append(before, f) {
		if n.value("MAINPID") != "" {
			t.Errorf("%q from pid %d: the successor that died on probation was named", n.fields, n.pid)
		}
	}
	if got := s.servingPid(); got != gen2 {
		t.Errorf("pid %d answered; want generation 2 (%d), which serves on", got, gen2)
	}
	s.stop()
}
