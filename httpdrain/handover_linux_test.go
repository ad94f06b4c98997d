//go:build linux

package httpdrain

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fakeLink is a Handoff that really moves a connection's descriptor to
// another Server in this process, through a socketpair and SCM_RIGHTS,
// the way the generation link does between processes: the successor's
// Server must answer on the very same TCP connection. (Linux only, for
// SOCK_CLOEXEC and MSG_CMSG_CLOEXEC, as the real link uses them.)
type fakeLink struct {
	send, recv int // the socketpair: HandOver writes to send
	refuse     bool

	mu     sync.Mutex // one transfer at a time on the stream
	calls  atomic.Int64
	handed atomic.Int64

	conns     chan net.Conn
	closed    chan struct{}
	closeOnce sync.Once
	done      chan struct{} // the receiver has returned
}

var errRefused = errors.New("fake link: refused")

func newFakeLink(t *testing.T, refuse bool) *fakeLink {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	l := &fakeLink{send: fds[0], recv: fds[1], refuse: refuse, conns: make(chan net.Conn, 1024), closed: make(chan struct{}), done: make(chan struct{})}
	go l.receive()
	t.Cleanup(func() {
		unix.Shutdown(l.send, unix.SHUT_RDWR) // the receiver sees EOF
		<-l.done
		unix.Close(l.send)
		unix.Close(l.recv)
	})
	return l
}

// HandOver sends c's descriptor with one data byte and waits for the
// receiver's verdict; on "yes" it closes this side's descriptor through c,
// as the real link does.
func (l *fakeLink) HandOver(ctx context.Context, name string, c syscall.Conn, state []byte) error {
	l.calls.Add(1)
	if name != DefaultHandoffName {
		return fmt.Errorf("fake link: name %q, want %q", name, DefaultHandoffName)
	}
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = unix.Sendmsg(l.send, []byte{'c'}, unix.UnixRights(int(fd)), nil, 0) }); err != nil {
		return err
	}
	if serr != nil {
		return serr
	}
	ack := make([]byte, 1)
	if n, err := unix.Read(l.send, ack); n != 1 || err != nil {
		return fmt.Errorf("fake link: no verdict: %d, %v", n, err)
	}
	if ack[0] != 'y' {
		return errRefused
	}
	l.handed.Add(1)
	return c.(io.Closer).Close()
}

// receive is the successor's end: it turns each descriptor into a
// net.Conn for Accept, or closes it if the link refuses.
func (l *fakeLink) receive() {
	defer close(l.done)
	buf, oob := make([]byte, 1), make([]byte, unix.CmsgSpace(4))
	for {
		n, oobn, flags, _, err := unix.Recvmsg(l.recv, buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err != nil || n == 0 || flags&unix.MSG_CTRUNC != 0 {
			return
		}
		msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return
		}
		fds, err := unix.ParseUnixRights(&msgs[0])
		if err != nil || len(fds) != 1 {
			return
		}
		f := os.NewFile(uintptr(fds[0]), "handed")
		c, err := net.FileConn(f)
		f.Close()
		verdict := byte('y')
		if err != nil || l.refuse {
			verdict = 'n'
			if c != nil {
				c.Close()
			}
		} else {
			l.conns <- c
		}
		if _, err := unix.Write(l.recv, []byte{verdict}); err != nil {
			return
		}
	}
}

// Accept, Close and Addr make the link the successor's listener, like
// baton's Handed.
func (l *fakeLink) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *fakeLink) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return nil
}

func (l *fakeLink) Addr() net.Addr { return &net.UnixAddr{Name: "fake-link", Net: "unix"} }

// gen is one generation: a Server whose handler answers with its name.
type gen struct {
	name string
	hs   *Server
	errc chan error
}

// startGen serves ln and every other listener in more with a Server named
// name; its drain hands connections over through link if not nil.
func startGen(t *testing.T, name string, link *fakeLink, grace time.Duration, h http.Handler, lns ...net.Listener) *gen {
	t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, name) })
	}
	o := Options{IdleGrace: grace, Logger: slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("gen", name)}
	if link != nil {
		o.Handoff = link
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0), ReadHeaderTimeout: 10 * time.Second}
	g := &gen{name: name, hs: New(srv, o), errc: make(chan error, len(lns))}
	for _, ln := range lns {
		go func() { g.errc <- g.hs.Serve(ln) }()
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		g.hs.Drain(ctx)
	})
	return g
}

// waitConns waits until g tracks n connections.
func waitConns(t *testing.T, g *gen, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		g.hs.mu.Lock()
		got := len(g.hs.conns)
		g.hs.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s tracks %d connections after 5s, want %d", g.name, got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestHandOverIdleNewAndInFlight(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	link := newFakeLink(t, false)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	// An IdleGrace far above the test's length: any connection that
	// leaves A before it must have been handed over, not closed.
	a := startGen(t, "A", link, time.Minute, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		io.WriteString(w, "A")
	}), ln)
	startGen(t, "B", nil, 50*time.Millisecond, nil, link)

	idle := &testClient{addr: addr, keepAlive: true, timeout: 5 * time.Second}
	defer idle.close()
	if _, body, err := idle.get("/"); err != nil || string(body) != "A" {
		t.Fatalf("first GET: body %q, err %v; want A", body, err)
	}
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer silent.Close()
	busy := &testClient{addr: addr, keepAlive: true, timeout: 5 * time.Second}
	defer busy.close()
	slow := make(chan error, 1)
	go func() {
		resp, body, err := busy.get("/slow")
		if err == nil && (resp.Close || string(body) != "A") {
			err = fmt.Errorf("Close = %v, body %q; want keep-alive from A", resp.Close, body)
		}
		slow <- err
	}()
	<-entered
	waitConns(t, a, 3)

	drained := drainAsync(a.hs, 10*time.Second)
	<-a.hs.Draining()
	close(release)
	if err := <-slow; err != nil {
		t.Errorf("request in flight when the drain began: %v", err)
	}
	r := waitDrain(t, drained, 10*time.Second)
	if r.err != nil {
		t.Fatalf("Drain = %v, want nil", r.err)
	}
	t.Logf("Drain with 3 connections to hand over took %v", r.took)
	if r.took > 5*time.Second {
		t.Errorf("Drain took %v, want the connections handed over well before IdleGrace (1m)", r.took)
	}
	if n := link.handed.Load(); n != 3 {
		t.Errorf("handed over %d connections, want 3 (idle, new, in flight)", n)
	}

	// The same TCP connections, now answered by B.
	for _, c := range []*testClient{idle, busy} {
		before := c.conn
		resp, body, err := c.get("/")
		if err != nil || string(body) != "B" || resp.Close {
			t.Errorf("GET after the handover: body %q, err %v; want B, keep-alive", body, err)
		} else if c.conn != before {
			t.Errorf("the client dialled again; want its one connection kept")
		}
	}
	silent.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(silent, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(silent), nil)
	if err != nil {
		t.Fatalf("GET on the connection accepted but silent before the drain: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "B" {
		t.Errorf("GET on the connection silent before the drain: body %q, want B", body)
	}
}

// TestHandOverRequestFirst puts requests exactly into the window between
// net/http's Read returning them and the drain waking that Read: they
// were read, so they are answered here. The first is answered with
// keep-alive, and the connection is handed over after it; with
// pipelining, the next one (already read too) with Connection: close.
func TestHandOverRequestFirst(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		pipelined int      // requests sent together as the drain begins
		want      []string // "server close?" of each response, then of one more request
	}{
		{"one", 1, []string{"A keep-alive", "B keep-alive"}},
		{"pipelined", 2, []string{"A keep-alive", "A close"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("listen: %v", err)
			}
			link := newFakeLink(t, false)
			startGen(t, "B", nil, time.Minute, nil, link)
			srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "A") }), ErrorLog: log.New(io.Discard, "", 0)}
			hs := New(srv, Options{IdleGrace: time.Minute, Handoff: link})
			woken := make(chan struct{})
			var once sync.Once
			drained := make(chan (<-chan drainResult), 1)
			var fired atomic.Bool
			hs.testHookWoken = func(*conn) { once.Do(func() { close(woken) }) }
			hs.testHookRead = func(c *conn, n int) {
				c.mu.Lock()
				idle := c.clean && c.state == http.StateIdle
				c.mu.Unlock()
				if n == 0 || !idle || fired.Swap(true) {
					return // not the first Read of the idle connection to return bytes
				}
				// The requests sent as the drain begins have just been
				// read: start the drain and let it wake this very Read
				// before it reports.
				drained <- drainAsync(hs, 10*time.Second)
				select {
				case <-woken:
				case <-time.After(5 * time.Second):
					panic("the drain did not wake the Read within 5s")
				}
			}
			go hs.Serve(ln)

			c, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(c)
			const req = "GET / HTTP/1.1\r\nHost: test\r\n\r\n"
			var got []string
			read := func(n int) {
				for range n {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatalf("after %q: read response: %v", got, err)
					}
					body, err := io.ReadAll(resp.Body)
					if err != nil {
						t.Fatalf("after %q: read body: %v", got, err)
					}
					close := "keep-alive"
					if resp.Close {
						close = "close"
					}
					got = append(got, string(body)+" "+close)
				}
			}
			io.WriteString(c, req)
			read(1)
			if got[0] != "A keep-alive" {
				t.Fatalf("first response: %q, want A keep-alive", got[0])
			}
			got = got[:0]
			io.WriteString(c, strings.Repeat(req, tc.pipelined))
			read(tc.pipelined)
			if tc.pipelined == 1 {
				io.WriteString(c, req)
				read(1)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Errorf("responses %q, want %q", got, tc.want)
			}
			r := waitDrain(t, <-drained, 10*time.Second)
			if r.err != nil {
				t.Errorf("Drain = %v, want nil", r.err)
			}
			if want := int64(2 - tc.pipelined); link.handed.Load() != want {
				t.Errorf("handed over %d connections, want %d", link.handed.Load(), want)
			}
		})
	}
}

// TestHandOverLeavesTLS: a TLS connection is drained as before (closed
// after IdleGrace), never handed over.
func TestHandOverLeavesTLS(t *testing.T) {
	t.Parallel()
	ts := httptest.NewUnstartedServer(hello)
	ts.StartTLS()
	certs, client := ts.TLS.Certificates, ts.Client()
	ts.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	link := newFakeLink(t, false)
	const grace = 50 * time.Millisecond
	a := startGen(t, "A", link, grace, nil, tls.NewListener(ln, &tls.Config{Certificates: certs}))
	defer client.CloseIdleConnections()
	resp, err := client.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatalf("GET over TLS: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r := waitDrain(t, drainAsync(a.hs, 5*time.Second), 5*time.Second)
	if r.err != nil {
		t.Fatalf("Drain = %v, want nil", r.err)
	}
	if n := link.calls.Load(); n != 0 {
		t.Errorf("HandOver called %d times for a TLS connection, want 0", n)
	}
	t.Logf("Drain with an idle TLS connection took %v (IdleGrace %v)", r.took, grace)
}

// TestHandOverRefused: when the successor refuses, the connection is
// still A's, drained as without a Handoff: closed with FIN after
// IdleGrace.
func TestHandOverRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	link := newFakeLink(t, true)
	const grace = 50 * time.Millisecond
	a := startGen(t, "A", link, grace, nil, ln)
	c := &testClient{addr: ln.Addr().String(), keepAlive: true, timeout: 5 * time.Second}
	defer c.close()
	if _, _, err := c.get("/"); err != nil {
		t.Fatalf("GET: %v", err)
	}
	r := waitDrain(t, drainAsync(a.hs, 5*time.Second), 5*time.Second)
	if r.err != nil {
		t.Fatalf("Drain = %v, want nil", r.err)
	}
	if n := link.calls.Load(); n != 1 {
		t.Errorf("HandOver called %d times, want 1", n)
	}
	if err := readEOF(t, c.conn, time.Second); !errors.Is(err, io.EOF) {
		t.Errorf("refused connection after Drain: read = %v, want EOF", err)
	}
}

// TestHandOverChain runs keep-alive clients that never retry through a
// chain of generations, each handing its connections to the next over a
// fakeLink, and counts what the clients saw: no request may fail, and no
// client may lose its connection.
func TestHandOverChain(t *testing.T) {
	t.Parallel()
	const (
		clients = 8
		gens    = 10
		grace   = 20 * time.Millisecond
		overlap = 30 * time.Millisecond
	)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()

	var fails failures
	var requests, redials atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &testClient{addr: addr, keepAlive: true, timeout: 10 * time.Second}
			defer c.close()
			dialled := false
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c.conn == nil && dialled {
					redials.Add(1) // the server closed the previous one
				}
				dialled = true
				if _, _, err := c.get("/"); err != nil {
					fails.add(fmt.Errorf("client %d: %w", i, err))
				}
				requests.Add(1)
				// Pauses from 0 to 2×IdleGrace: some requests are
				// sent just as a drain looks at the connection.
				time.Sleep(rand.N(2 * grace))
			}
		}()
	}

	// Each generation serves its own descriptor of the listening socket
	// (as after a real handoff) and the link from its predecessor, and
	// hands its connections over the link to its successor.
	links := []*fakeLink{newFakeLink(t, false)}
	cur := startGen(t, "g0", links[0], grace, nil, ln)
	for i := 1; i <= gens; i++ {
		time.Sleep(overlap)
		links = append(links, newFakeLink(t, false))
		nextLn := dupListener(t, ln) // before cur's drain closes ln
		next := startGen(t, fmt.Sprintf("g%d", i), links[i], grace, nil, nextLn, links[i-1])
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		err := cur.hs.Drain(ctx)
		cancel()
		if err != nil {
			t.Errorf("Drain of %s: %v", cur.name, err)
		}
		t.Logf("%s drained in %v, handed %d", cur.name, time.Since(start).Round(time.Microsecond), links[i-1].handed.Load())
		cur, ln = next, nextLn
	}
	time.Sleep(overlap)
	close(stop)
	wg.Wait()
	var handed int64
	for _, l := range links {
		handed += l.handed.Load()
	}
	t.Logf("%d requests, %d handed connections over %d handoffs; failed: %s; redials: %d", requests.Load(), handed, gens, &fails, redials.Load())
	if n := fails.total(); n != 0 {
		t.Errorf("%d requests failed, want 0: %s", n, &fails)
	}
	if n := redials.Load(); n != 0 {
		t.Errorf("%d connections closed by the server, want 0: each client keeps its one connection", n)
	}
}
