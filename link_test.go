//go:build linux

package baton_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/proctest"
)

// echoServer is the test server's part of the generation link (Echo): a
// line protocol on a TCP listener named "echo". Every line is answered
// "pid=P gen=G n=N line=L", N counting the lines of the connection in
// every generation (the count travels as the connection's state). The
// line "move" is answered "moving pid=P" and the connection is then
// handed to the successor; so is every idle connection once Exit is
// closed, with MoveOnExit. A connection the successor does not take
// stays here and is served on; at the end of the drain it is told
// "bye pid=P" and closed. It prints "echo gen=G addr=A", "state gen=G
// pred=…" (the predecessor's blob), "handed gen=G n=N" and
// "handover-failed gen=G err=…".
type echoServer struct {
	upg *baton.Upgrader
	gen int

	mu      sync.Mutex
	conns   map[*echoConn]bool
	exiting bool
	wg      sync.WaitGroup
	lns     []net.Listener
}

type echoConn struct {
	c net.Conn // a *net.TCPConn, or a *baton.HandedConn
	n int
}

func startEcho(upg *baton.Upgrader, cfg serverConfig, gen int) *echoServer {
	e := &echoServer{upg: upg, gen: gen, conns: make(map[*echoConn]bool)}
	ln, err := upg.Listener("echo")
	if err != nil {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		check(err)
		check(upg.Add("echo", l.(*net.TCPListener)))
		ln = l
	}
	e.lns = append(e.lns, ln)
	if gen != cfg.NoHandedGen {
		h, err := upg.Handed("echo")
		check(err)
		e.lns = append(e.lns, h)
		go e.accept(h)
	}
	go e.accept(ln)
	if b, ok := upg.PredecessorState("counter"); ok {
		fmt.Printf("state gen=%d pred=%q\n", gen, b)
	}
	check(upg.SetState("counter", fmt.Appendf(nil, "set by gen %d", gen)))
	fmt.Printf("echo gen=%d addr=%s\n", gen, ln.Addr())
	return e
}

func (e *echoServer) accept(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		ec := &echoConn{c: c}
		if hc, ok := c.(*baton.HandedConn); ok {
			ec.n, _ = strconv.Atoi(string(hc.State))
		}
		e.mu.Lock()
		e.conns[ec] = true
		e.wg.Add(1)
		if e.exiting {
			c.SetReadDeadline(time.Now())
		}
		e.mu.Unlock()
		go e.serve(ec)
	}
}

func (e *echoServer) serve(ec *echoConn) {
	defer e.wg.Done()
	r := bufio.NewReader(ec.c)
	pending := ""
	for {
		line, err := r.ReadString('\n')
		pending += line
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && e.isExiting() {
				// Idle, nothing of a next line read: a boundary of the
				// protocol, so the connection may go.
				if pending == "" && r.Buffered() == 0 && e.move(ec) {
					return
				}
				ec.c.SetReadDeadline(time.Time{})
				continue
			}
			e.forget(ec)
			ec.c.Close()
			return
		}
		line, pending = strings.TrimSuffix(pending, "\n"), ""
		ec.n++
		if line == "move" {
			fmt.Fprintf(ec.c, "moving pid=%d\n", os.Getpid())
			if e.move(ec) {
				return
			}
			continue
		}
		fmt.Fprintf(ec.c, "pid=%d gen=%d n=%d line=%s\n", os.Getpid(), e.gen, ec.n, line)
	}
}

// move hands ec to the successor, and reports whether it took it.
func (e *echoServer) move(ec *echoConn) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.upg.HandOver(ctx, "echo", ec.c.(syscall.Conn), []byte(strconv.Itoa(ec.n)))
	if err != nil {
		fmt.Printf("handover-failed gen=%d err=%q\n", e.gen, err)
		return false
	}
	e.forget(ec)
	fmt.Printf("handed gen=%d n=%d\n", e.gen, ec.n)
	return true
}

func (e *echoServer) forget(ec *echoConn) {
	e.mu.Lock()
	delete(e.conns, ec)
	e.mu.Unlock()
}

func (e *echoServer) isExiting() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.exiting
}

// moveAll hands every connection over as soon as it is idle: a read
// deadline in the past wakes each reader.
func (e *echoServer) moveAll() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.exiting = true
	for ec := range e.conns {
		ec.c.SetReadDeadline(time.Now())
	}
}

// drain waits until every connection is handed over or closed by its
// client, or ctx ends; then it says bye to the rest and closes them.
func (e *echoServer) drain(ctx context.Context) {
	for _, ln := range e.lns {
		ln.Close()
	}
	done := make(chan struct{})
	go func() {
		e.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	e.mu.Lock()
	for ec := range e.conns {
		fmt.Fprintf(ec.c, "bye pid=%d\n", os.Getpid())
		ec.c.Close()
	}
	e.mu.Unlock()
	<-done
}

// echoClient is one connection to the echo listener, talking line by
// line; it never reconnects.
type echoClient struct {
	c net.Conn
	r *bufio.Reader
}

func dialEcho(t *testing.T, addr string) *echoClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dialing the echo listener %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return &echoClient{c: c, r: bufio.NewReader(c)}
}

// say sends line and returns the answer, without its newline.
func (ec *echoClient) say(t *testing.T, line string) string {
	t.Helper()
	ec.c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := fmt.Fprintf(ec.c, "%s\n", line); err != nil {
		t.Fatalf("sending %q: %v", line, err)
	}
	answer, err := ec.r.ReadString('\n')
	if err != nil {
		t.Fatalf("sent %q; reading the answer: %q, %v (EOF: the connection was closed without a word)", line, answer, err)
	}
	return strings.TrimSuffix(answer, "\n")
}

// echoAddr waits for generation gen's echo line and returns its address.
func (s *server) echoAddr(gen int) string {
	s.t.Helper()
	line, err := s.proc.WaitLine(fmt.Sprintf("echo gen=%d ", gen), 20*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	return proctest.Field(line, "addr")
}

// The generation link carries established connections: twenty clients
// that never reconnect keep talking, on the same connections, to the
// successor, which took each with its state (the line count), and the
// old generation, done handing them over, exits. The state blob set in
// generation 1 is read in generation 2.
func TestLinkHandsOverConnections(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig{Echo: true, MoveOnExit: true})
	addr := s.echoAddr(1)
	old := s.pid
	const n = 20
	clients := make([]*echoClient, n)
	for i := range clients {
		clients[i] = dialEcho(t, addr)
		want := fmt.Sprintf("pid=%d gen=1 n=1 line=hello-%d", old, i)
		if got := clients[i].say(t, fmt.Sprintf("hello-%d", i)); got != want {
			t.Fatalf("client %d: %q, want %q", i, got, want)
		}
	}

	s.mustUpgrade()
	line, err := s.proc.WaitLine("state gen=2 ", 20*time.Second)
	if err != nil {
		t.Fatalf("generation 2 read no state from generation 1: %v", err)
	}
	if got, want := line, `state gen=2 pred="set by gen 1"`; got != want {
		t.Errorf("generation 2 printed %q, want %q", got, want)
	}
	if _, err := s.proc.WaitLine("exit gen=1 ", 20*time.Second); err != nil {
		t.Fatalf("generation 1 did not exit after handing its connections over: %v\n%s", err, s.proc.Output())
	}
	if got := strings.Count(s.proc.Output(), "handed gen=1 "); got != n {
		t.Errorf("generation 1 handed %d connections over, want %d:\n%s", got, n, s.proc.Output())
	}
	if strings.Contains(s.proc.Output(), "handover-failed") {
		t.Errorf("a handover failed:\n%s", s.proc.Output())
	}
	for i, c := range clients {
		want := fmt.Sprintf("pid=%d gen=2 n=2 line=again-%d", s.pid, i)
		if got := c.say(t, fmt.Sprintf("again-%d", i)); got != want {
			t.Errorf("client %d after the upgrade: %q, want %q", i, got, want)
		}
		// One descriptor for it in the new generation: none leaked in
		// making a net.Conn of what arrived.
		if n := descriptorsOf(t, s.pid, serverSocket(t, c.c)); n != 1 {
			t.Errorf("client %d: generation 2 holds %d descriptors of its connection, want 1", i, n)
		}
	}
	// And on to a third generation: a handed connection is handed on.
	s.mustUpgrade()
	for i, c := range clients {
		want := fmt.Sprintf("pid=%d gen=3 n=3 line=third-%d", s.pid, i)
		if got := c.say(t, fmt.Sprintf("third-%d", i)); got != want {
			t.Errorf("client %d after the second upgrade: %q, want %q", i, got, want)
		}
	}
	for _, c := range clients {
		c.c.Close()
	}
	s.stop()
}

// serverSocket returns the inode of the server's end of c, a client's
// TCP connection, from /proc/net/tcp.
func serverSocket(t *testing.T, c net.Conn) uint64 {
	t.Helper()
	local, err1 := netip.ParseAddrPort(c.RemoteAddr().String())
	remote, err2 := netip.ParseAddrPort(c.LocalAddr().String())
	if err1 != nil || err2 != nil {
		t.Fatalf("addresses of %v: %v, %v", c, err1, err2)
	}
	socks, err := procfs.NetTCP()
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range socks {
		if s.Local == local && s.Remote == remote && s.State == procfs.TCPEstablished {
			return s.Inode
		}
	}
	t.Fatalf("no established socket %v -> %v in /proc/net/tcp", local, remote)
	return 0
}

// owners returns those of pids that hold the socket inode.
func owners(t *testing.T, inode uint64, pids ...int) []int {
	t.Helper()
	var out []int
	for _, pid := range pids {
		inodes, err := procfs.SocketInodes(pid)
		if err != nil && proctest.Alive(pid) {
			t.Fatalf("sockets of pid %d: %v", pid, err)
		}
		if slices.Contains(inodes, inode) {
			out = append(out, pid)
		}
	}
	return out
}

// descriptorsOf counts pid's descriptors of the socket inode.
func descriptorsOf(t *testing.T, pid int, inode uint64) int {
	t.Helper()
	links, err := procfs.FDLinks(pid)
	if err != nil {
		t.Fatalf("descriptors of pid %d: %v", pid, err)
	}
	n := 0
	for _, l := range links {
		if ino, ok := procfs.ParseSocketLink(l); ok && ino == inode {
			n++
		}
	}
	return n
}

// wantOwner checks that exactly want, of pids, holds the server's end of
// c.
func wantOwner(t *testing.T, c net.Conn, want int, pids ...int) {
	t.Helper()
	if got := owners(t, serverSocket(t, c), pids...); !slices.Equal(got, []int{want}) {
		t.Errorf("the connection is held by %v of %v; want by %d alone", got, pids, want)
	}
}

// linkFault sets a connection up in generation 1, upgrades to generation
// 2 and returns the server, the client and the two pids. Generation 1
// drains for a minute: the connection stays with it until the test ends.
func linkFault(t *testing.T, cfg serverConfig) (s *server, c *echoClient, old, next int) {
	t.Helper()
	cfg.Echo, cfg.Drain = true, time.Minute
	s = startServer(t, cfg)
	c = dialEcho(t, s.echoAddr(1))
	old = s.pid
	if got, want := c.say(t, "hello"), fmt.Sprintf("pid=%d gen=1 n=1 line=hello", old); got != want {
		t.Fatalf("before the upgrade: %q, want %q", got, want)
	}
	s.mustUpgrade()
	return s, c, old, s.pid
}

// moveFails asks generation 1 to hand the connection over, which must
// fail with an error that says want; generation 1 keeps serving it.
func moveFails(t *testing.T, s *server, c *echoClient, old int, want string) {
	t.Helper()
	if got, w := c.say(t, "move"), fmt.Sprintf("moving pid=%d", old); got != w {
		t.Fatalf("move: %q, want %q", got, w)
	}
	line, err := s.proc.WaitLine("handover-failed gen=1 ", 20*time.Second)
	if err != nil {
		t.Fatalf("generation 1 reported no failed handover: %v\n%s", err, s.proc.Output())
	}
	if !strings.Contains(line, want) {
		t.Errorf("generation 1 reported %q; want it to say %q", line, want)
	}
	if got, w := c.say(t, "still"), fmt.Sprintf("pid=%d gen=1 n=3 line=still", old); got != w {
		t.Errorf("after the failed handover: %q, want %q (the old generation keeps it)", got, w)
	}
}

// A successor that did not ask for connections of that name refuses
// them: the old generation keeps the connection, serves it on, and says
// why.
func TestLinkSuccessorRefuses(t *testing.T) {
	t.Parallel()
	s, c, old, next := linkFault(t, serverConfig{NoHandedGen: 2})
	moveFails(t, s, c, old, `the successor refused the connection: nobody asked for connections named \"echo\"`)
	wantOwner(t, c.c, old, old, next)
	c.c.Close()
	s.stop()
}

// The kernel cannot give the successor the descriptor (its RLIMIT_NOFILE
// is reached: MSG_CTRUNC): it refuses, the old generation keeps the
// connection, and the link goes on: with room again, the next handover
// of the same connection succeeds.
func TestLinkDescriptorLimit(t *testing.T) {
	t.Parallel()
	s, c, old, next := linkFault(t, serverConfig{})
	var lim unix.Rlimit
	if err := unix.Prlimit(next, unix.RLIMIT_NOFILE, nil, &lim); err != nil {
		t.Fatal(err)
	}
	low := lim
	low.Cur = 3 // below every descriptor it has: no new one fits
	if err := unix.Prlimit(next, unix.RLIMIT_NOFILE, &low, nil); err != nil {
		t.Fatalf("prlimit(%d, RLIMIT_NOFILE, 3): %v", next, err)
	}
	moveFails(t, s, c, old, "MSG_CTRUNC")
	wantOwner(t, c.c, old, old, next)

	if err := unix.Prlimit(next, unix.RLIMIT_NOFILE, &lim, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := c.say(t, "move"), fmt.Sprintf("moving pid=%d", old); got != want {
		t.Fatalf("move: %q, want %q", got, want)
	}
	if got, want := c.say(t, "later"), fmt.Sprintf("pid=%d gen=2 n=5 line=later", next); got != want {
		t.Errorf("after the second handover: %q, want %q", got, want)
	}
	wantOwner(t, c.c, next, old, next)
	c.c.Close()
	s.stop()
}

// A successor killed while the connection is on its way, before it
// could acknowledge it (stopped, then killed): the old generation
// keeps it.
func TestLinkSuccessorKilledBeforeAck(t *testing.T) {
	t.Parallel()
	s, c, old, next := linkFault(t, serverConfig{})
	if err := syscall.Kill(next, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	// The stop takes effect when the successor is next scheduled, which
	// on a loaded machine is not at once.
	for st := time.Now(); proctest.State(next) != "T"; {
		if time.Since(st) > 10*time.Second {
			t.Fatalf("pid %d not stopped after SIGSTOP: state %q", next, proctest.State(next))
		}
		time.Sleep(time.Millisecond)
	}
	if got, want := c.say(t, "move"), fmt.Sprintf("moving pid=%d", old); got != want {
		t.Fatalf("move: %q, want %q", got, want)
	}
	// HandOver waits for an answer the stopped successor cannot give:
	// it must neither fail nor succeed on its own.
	time.Sleep(500 * time.Millisecond)
	if out := s.proc.Output(); strings.Contains(out, "handover-failed") || strings.Contains(out, "handed gen=1") {
		t.Fatalf("HandOver returned while the successor was stopped:\n%s", out)
	}
	if err := syscall.Kill(next, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	line, err := s.proc.WaitLine("handover-failed gen=1 ", 20*time.Second)
	if err != nil {
		t.Fatalf("no failed handover after the successor died: %v\n%s", err, s.proc.Output())
	}
	if !strings.Contains(line, "no successor") {
		t.Errorf("generation 1 reported %q; want ErrNoSuccessor", line)
	}
	if got, want := c.say(t, "still"), fmt.Sprintf("pid=%d gen=1 n=3 line=still", old); got != want {
		t.Errorf("after the successor died: %q, want %q", got, want)
	}
	wantOwner(t, c.c, old, old)
	c.c.Close()
	if _, err := s.proc.WaitLine("exit gen=1 ", 20*time.Second); err != nil {
		t.Errorf("generation 1 did not exit once its connection was closed: %v", err)
	}
}

// A successor killed after it acknowledged the connection: it was the
// successor's, so it dies with it; the old generation, which closed its
// descriptor on the acknowledgement, does not hold it.
func TestLinkSuccessorKilledAfterAck(t *testing.T) {
	t.Parallel()
	s, c, old, next := linkFault(t, serverConfig{})
	if got, want := c.say(t, "move"), fmt.Sprintf("moving pid=%d", old); got != want {
		t.Fatalf("move: %q, want %q", got, want)
	}
	if _, err := s.proc.WaitLine("handed gen=1 ", 20*time.Second); err != nil {
		t.Fatalf("no handover: %v\n%s", err, s.proc.Output())
	}
	wantOwner(t, c.c, next, old, next)
	inode := serverSocket(t, c.c)
	if err := syscall.Kill(next, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	if b, err := c.r.ReadString('\n'); !errors.Is(err, io.EOF) {
		t.Errorf("reading after the owner died: %q, %v; want EOF", b, err)
	}
	if got := owners(t, inode, old); len(got) > 0 {
		t.Errorf("generation 1 holds the connection after handing it over")
	}
	if _, err := s.proc.WaitLine("exit gen=1 ", 20*time.Second); err != nil {
		t.Errorf("generation 1 did not exit: %v", err)
	}
}

// The link is gone before HandOver (the successor died): HandOver fails
// at once with ErrNoSuccessor, and the old generation serves on.
func TestLinkBroken(t *testing.T) {
	t.Parallel()
	s, c, old, next := linkFault(t, serverConfig{})
	if err := syscall.Kill(next, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := proctest.Reap(next, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	moveFails(t, s, c, old, "no successor")
	wantOwner(t, c.c, old, old)
	c.c.Close()
	if _, err := s.proc.WaitLine("exit gen=1 ", 20*time.Second); err != nil {
		t.Errorf("generation 1 did not exit once its connection was closed: %v", err)
	}
}

// The link between instances that met through the control socket — the
// new one started by somebody else, not by its predecessor — carries
// connections and state the same way.
func TestLinkOverControlSocket(t *testing.T) {
	t.Parallel()
	in := startInstances(t, serverConfig{Echo: true, MoveOnExit: true})
	line, err := in.procs[0].WaitLine("echo gen=1 ", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	addr, old := proctest.Field(line, "addr"), in.pid
	clients := make([]*echoClient, 5)
	for i := range clients {
		clients[i] = dialEcho(t, addr)
		if got, want := clients[i].say(t, "hello"), fmt.Sprintf("pid=%d gen=1 n=1 line=hello", old); got != want {
			t.Fatalf("client %d: %q, want %q", i, got, want)
		}
	}
	if err := in.next(); err != nil {
		t.Fatal(err)
	}
	if line, err := in.procs[1].WaitLine("state gen=2 ", 20*time.Second); err != nil || line != `state gen=2 pred="set by gen 1"` {
		t.Errorf("the new instance read the state %q, %v; want generation 1's", line, err)
	}
	if _, err := in.procs[0].Wait(20 * time.Second); err != nil {
		t.Fatalf("the old instance did not exit after handing its connections over: %v\n%s", err, in.procs[0].Output())
	}
	for i, c := range clients {
		if got, want := c.say(t, "again"), fmt.Sprintf("pid=%d gen=2 n=2 line=again", in.pid); got != want {
			t.Errorf("client %d after the takeover: %q, want %q", i, got, want)
		}
		c.c.Close()
	}
	if err := syscall.Kill(in.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if _, err := in.procs[1].Wait(20 * time.Second); err != nil {
		t.Fatal(err)
	}
}
