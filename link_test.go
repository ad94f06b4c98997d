//go:build linux

package baton_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton"
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
