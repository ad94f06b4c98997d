package httpdrain

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// served is a Server under test.
type served struct {
	hs       *Server
	addr     string
	serveErr chan error
	// accepted receives a value for each connection the server has
	// accepted (ConnState StateNew); sends that would block are dropped.
	accepted chan struct{}
}

// serve starts a Server for h on a fresh listener on 127.0.0.1.
func serve(t *testing.T, h http.Handler, o Options) *served {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	accepted := make(chan struct{}, 64)
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0), ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			select {
			case accepted <- struct{}{}:
			default:
			}
		}
	}}
	s := &served{hs: New(srv, o), addr: ln.Addr().String(), serveErr: make(chan error, 1), accepted: accepted}
	go func() { s.serveErr <- s.hs.Serve(ln) }()
	t.Cleanup(func() {
		// Whatever the test did, leave no server behind.
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.hs.Drain(ctx)
	})
	return s
}

// drainAsync runs Drain with the given timeout and reports its result and
// how long it took.
func drainAsync(hs *Server, timeout time.Duration) <-chan drainResult {
	ch := make(chan drainResult, 1)
	go func() {
		start := time.Now() // before the deadline is set: took >= timeout on expiry
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		err := hs.Drain(ctx)
		ch <- drainResult{err, time.Since(start)}
	}()
	return ch
}

type drainResult struct {
	err  error
	took time.Duration
}

func waitDrain(t *testing.T, ch <-chan drainResult, limit time.Duration) drainResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(limit):
		t.Fatalf("Drain did not return within %v", limit)
		return drainResult{}
	}
}

// readEOF reads from c until it ends and reports how it ended.
func readEOF(t *testing.T, c net.Conn, within time.Duration) error {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(within))
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		err = io.EOF // io.Copy turns EOF into nil
	}
	return err
}

var hello = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })

func TestDrainClosesIdleConns(t *testing.T) {
	t.Parallel()
	const grace = 100 * time.Millisecond
	logger := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := serve(t, hello, Options{IdleGrace: grace, Logger: logger})

	// A keep-alive connection that goes quiet after one request, and one
	// that never sends anything.
	c := &testClient{addr: s.addr, keepAlive: true, timeout: 5 * time.Second}
	defer c.close()
	if _, _, err := c.get("/"); err != nil {
		t.Fatalf("get: %v", err)
	}
	silent, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer silent.Close()
	// Both accepted before the drain: a connection still in the accept
	// queue when the listener closes is reset by the kernel, which is the
	// listener's fate, not the drain's (seen on a loaded machine).
	for range 2 {
		select {
		case <-s.accepted:
		case <-time.After(5 * time.Second):
			t.Fatal("the server did not accept both connections within 5s")
		}
	}

	r := waitDrain(t, drainAsync(s.hs, 5*time.Second), 5*time.Second)
	if r.err != nil {
		t.Fatalf("Drain = %v, want nil", r.err)
	}
	// The deadline is 5s; the idle connections must not hold the drain
	// much longer than the grace period.
	if r.took > grace+time.Second {
		t.Errorf("Drain took %v with IdleGrace %v, want well under the 5s deadline", r.took, grace)
	}
	// FIN, not RST: nothing was left unread.
	if err := readEOF(t, c.conn, time.Second); !errors.Is(err, io.EOF) {
		t.Errorf("idle keep-alive connection after Drain: read = %v, want EOF", err)
	}
	if err := readEOF(t, silent, time.Second); !errors.Is(err, io.EOF) {
		t.Errorf("silent new connection after Drain: read = %v, want EOF", err)
	}
	t.Logf("Drain took %v with IdleGrace %v", r.took, grace)
}

func TestDrainSendsConnectionClose(t *testing.T) {
	t.Parallel()
	// IdleGrace far above how long the test may take: the client must
	// leave because it was told to, not because it was closed.
	s := serve(t, hello, Options{IdleGrace: time.Minute})
	c := &testClient{addr: s.addr, keepAlive: true, timeout: 5 * time.Second}
	defer c.close()
	resp, _, err := c.get("/")
	if err != nil {
		t.Fatalf("get before Drain: %v", err)
	}
	if resp.Close {
		t.Fatalf("response before Drain has Connection: close, want keep-alive")
	}
	select {
	case <-s.hs.Draining():
		t.Fatalf("Draining() closed before Drain was called")
	default:
	}

	drained := drainAsync(s.hs, 10*time.Second)
	select {
	case <-s.hs.Draining():
	case <-time.After(5 * time.Second):
		t.Fatalf("Draining() not closed within 5s of calling Drain")
	}
	resp, body, err := c.get("/")
	if err != nil {
		t.Fatalf("get on the kept-alive connection during Drain: %v", err)
	}
	if !resp.Close || string(body) != "hello" {
		t.Errorf("response during Drain: Close = %v, body %q; want Close = true, body %q", resp.Close, body, "hello")
	}
	r := waitDrain(t, drained, 5*time.Second)
	if r.err != nil {
		t.Fatalf("Drain = %v, want nil", r.err)
	}
	if r.took > 2*time.Second {
		t.Errorf("Drain took %v, want the client to have left at once", r.took)
	}
}

func TestServeReturnsServerClosed(t *testing.T) {
	t.Parallel()
	srv := &http.Server{Handler: hello}
	hs := New(srv, Options{})
	errs := make(chan error, 2)
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		go func() { errs <- hs.Serve(ln) }()
	}
	// Let both Serve calls reach Accept; Drain also works if they have not.
	time.Sleep(20 * time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := hs.Drain(ctx); err != nil {
		t.Fatalf("Drain = %v, want nil", err)
	}
	for i := range 2 {
		select {
		case err := <-errs:
			if !errors.Is(err, http.ErrServerClosed) {
				t.Errorf("Serve %d = %v, want http.ErrServerClosed", i, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Serve %d did not return within 5s of Drain", i)
		}
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Drain = %v, want http.ErrServerClosed", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Errorf("Serve after Drain left its listener open")
	}
	if err := hs.Drain(ctx); err != nil {
		t.Errorf("second Drain = %v, want the first one's result, nil", err)
	}
}

func TestDrainTwiceWaitsForTheFirst(t *testing.T) {
	t.Parallel()
	started := make(chan struct{}, 1)
	s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "slow")
	}), Options{})
	got := make(chan error, 1)
	go func() {
		c := &testClient{addr: s.addr, timeout: 5 * time.Second}
		_, _, err := c.get("/")
		got <- err
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatalf("request did not start within 5s")
	}
	first := drainAsync(s.hs, 5*time.Second)
	select {
	case <-s.hs.Draining():
	case <-time.After(5 * time.Second):
		t.Fatalf("Draining() not closed within 5s of calling Drain")
	}

	// A second call whose own context ends first says so.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := s.hs.Drain(ctx); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "another call") {
		t.Errorf("second Drain with a short context = %v, want an error about waiting for another call wrapping context.DeadlineExceeded", err)
	}
	// A third call waits for the first.
	third := drainAsync(s.hs, 5*time.Second)
	r1, r3 := waitDrain(t, first, 5*time.Second), waitDrain(t, third, 5*time.Second)
	if r1.err != nil || r3.err != nil {
		t.Errorf("first Drain = %v, third Drain = %v; want nil, nil", r1.err, r3.err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Errorf("request in flight during Drain: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("request did not finish within 5s")
	}
}

func TestDrainDeadline(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	defer close(release)
	stuck := make(chan struct{}, 1)
	var hs *Server
	mux := http.NewServeMux()
	mux.HandleFunc("/stuck", func(w http.ResponseWriter, r *http.Request) {
		stuck <- struct{}{}
		<-release // deaf to r.Context(), as stuck handlers are
	})
	mux.HandleFunc("/hijack", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		done := hs.Hijacked(conn)
		brw.WriteString("hijacked\n")
		brw.Flush()
		go func() {
			// A connection that ignores Draining.
			defer done()
			defer conn.Close()
			io.Copy(io.Discard, conn)
		}()
	})
	s := serve(t, mux, Options{})
	hs = s.hs

	stuckErr := make(chan error, 1)
	go func() {
		c := &testClient{addr: s.addr, timeout: 10 * time.Second}
		_, _, err := c.get("/stuck")
		stuckErr <- err
	}()
	select {
	case <-stuck:
	case <-time.After(5 * time.Second):
		t.Fatalf("stuck handler did not start within 5s")
	}
	hj, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer hj.Close()
	io.WriteString(hj, "GET /hijack HTTP/1.1\r\nHost: test\r\n\r\n")
	hj.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := bufio.NewReader(hj).ReadString('\n'); line != "hijacked\n" {
		t.Fatalf("hijacked connection said %q, %v; want %q", line, err, "hijacked\n")
	}

	const deadline = 300 * time.Millisecond
	r := waitDrain(t, drainAsync(hs, deadline), 5*time.Second)
	var de *DeadlineError
	if !errors.As(r.err, &de) || !errors.Is(r.err, context.DeadlineExceeded) {
		t.Fatalf("Drain = %v, want a *DeadlineError wrapping context.DeadlineExceeded", r.err)
	}
	if de.Active != 1 || de.Hijacked != 1 {
		t.Errorf("DeadlineError = %+v, want Active 1, Hijacked 1", *de)
	}
	if want := "closed 1 active and 1 hijacked connections"; !strings.Contains(r.err.Error(), want) {
		t.Errorf("Drain error %q does not say %q", r.err, want)
	}
	if r.took < deadline || r.took > deadline+time.Second {
		t.Errorf("Drain took %v, want just over its %v deadline", r.took, deadline)
	}
	select {
	case err := <-stuckErr:
		if err == nil {
			t.Errorf("request to the stuck handler succeeded, want its connection closed at the deadline")
		}
	case <-time.After(5 * time.Second):
		t.Errorf("request to the stuck handler still waiting 5s after the deadline")
	}
	if err := readEOF(t, hj, 5*time.Second); err != nil && !errors.Is(err, io.EOF) && classify(err) != "reset" {
		t.Errorf("hijacked connection after the deadline: read = %v, want it closed", err)
	}
	t.Logf("Drain = %v", r.err)
}

func TestDrainWaitsForHijacked(t *testing.T) {
	t.Parallel()
	var hs *Server
	s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("Hijack: %v", err)
			return
		}
		done := hs.Hijacked(conn)
		brw.WriteString("hello\n")
		brw.Flush()
		go func() {
			// A WebSocket-like handler: says goodbye when the
			// server drains.
			defer done()
			defer conn.Close()
			select {
			case <-hs.Draining():
				time.Sleep(50 * time.Millisecond) // some protocol goodbye
				io.WriteString(conn, "goodbye\n")
			case <-time.After(10 * time.Second):
			}
		}()
	}), Options{})
	hs = s.hs
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if line, err := br.ReadString('\n'); line != "hello\n" {
		t.Fatalf("hijacked connection said %q, %v; want %q", line, err, "hello\n")
	}
	r := waitDrain(t, drainAsync(hs, 5*time.Second), 5*time.Second)
	if r.err != nil {
		t.Fatalf("Drain = %v, want nil", r.err)
	}
	if line, err := br.ReadString('\n'); line != "goodbye\n" {
		t.Errorf("hijacked connection said %q, %v; want %q before Drain returned", line, err, "goodbye\n")
	}
	if r.took < 50*time.Millisecond {
		t.Errorf("Drain took %v, want it to wait for the hijacked connection's goodbye (50ms)", r.took)
	}
}

func TestDrainHTTP2(t *testing.T) {
	t.Parallel()
	// Borrow httptest's certificate and a client that trusts it.
	ts := httptest.NewUnstartedServer(hello)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	certs, client := ts.TLS.Certificates, ts.Client()
	ts.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	tl := tls.NewListener(ln, &tls.Config{Certificates: certs, NextProtos: []string{"h2", "http/1.1"}})
	srv := &http.Server{Handler: hello, ErrorLog: log.New(io.Discard, "", 0)}
	hs := New(srv, Options{IdleGrace: 10 * time.Millisecond})
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(tl) }()
	defer client.CloseIdleConnections()

	resp, err := client.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatalf("GET over HTTP/2: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.ProtoMajor != 2 {
		t.Fatalf("response protocol %s, want HTTP/2", resp.Proto)
	}
	hs.mu.Lock()
	var h2 int
	for _, ci := range hs.conns {
		if ci.h2 {
			h2++
		}
	}
	hs.mu.Unlock()
	if h2 != 1 {
		t.Errorf("tracked %d HTTP/2 connections, want 1", h2)
	}

	// The idle HTTP/2 connection is left to Shutdown's GOAWAY, not closed
	// by the sweep; the client then closes it.
	r := waitDrain(t, drainAsync(hs, 5*time.Second), 5*time.Second)
	if r.err != nil {
		t.Fatalf("Drain = %v, want nil", r.err)
	}
	select {
	case err := <-serveErr:
		if !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve = %v, want http.ErrServerClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("Serve did not return within 5s of Drain")
	}
	t.Logf("Drain with an idle HTTP/2 connection took %v", r.took)
}

func TestDrainLeavesNoGoroutine(t *testing.T) {
	// Not parallel: it counts every goroutine in the process.
	before := runtime.NumGoroutine()
	func() {
		s := serve(t, hello, Options{IdleGrace: 50 * time.Millisecond})
		var clients []*testClient
		for i := range 4 {
			c := &testClient{addr: s.addr, keepAlive: i%2 == 0, timeout: 5 * time.Second}
			clients = append(clients, c)
			if _, _, err := c.get("/"); err != nil {
				t.Fatalf("get: %v", err)
			}
		}
		r := waitDrain(t, drainAsync(s.hs, 5*time.Second), 5*time.Second)
		if r.err != nil {
			t.Fatalf("Drain = %v, want nil", r.err)
		}
		select {
		case <-s.serveErr:
		case <-time.After(5 * time.Second):
			t.Fatalf("Serve did not return within 5s of Drain")
		}
		for _, c := range clients {
			c.close()
		}
	}()
	var now int
	for i := 0; i < 200; i++ { // 2s at most
		if now = runtime.NumGoroutine(); now <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	t.Errorf("%d goroutines before, %d two seconds after Drain returned:\n%s", before, now, buf[:runtime.Stack(buf, true)])
}

func TestPendingBytes(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	s, err := ln.Accept()
	if err != nil {
		t.Fatalf("accept: %v", err)
	}
	defer s.Close()
	if n, ok := pendingBytes(s); !ok {
		t.Skip("FIONREAD not supported here")
	} else if n != 0 {
		t.Fatalf("pendingBytes before any write = %d, want 0", n)
	}
	io.WriteString(c, "hello")
	var n int
	for i := 0; i < 100 && n != 5; i++ { // 1s at most
		time.Sleep(10 * time.Millisecond)
		n, _ = pendingBytes(s)
	}
	if n != 5 {
		t.Fatalf("pendingBytes after the peer wrote 5 bytes = %d, want 5", n)
	}
	tc := tls.Server(s, &tls.Config{})
	if n, ok := pendingBytes(tc); !ok || n != 5 {
		t.Errorf("pendingBytes through *tls.Conn = %d, %v; want 5, true", n, ok)
	}
	// As wrapped for a Handoff.
	wc := (&Server{}).wrap(s)
	if _, isWrapped := wc.(*conn); !isWrapped {
		t.Fatalf("wrap(%T) = %T, want *conn", s, wc)
	}
	if n, ok := pendingBytes(wc); !ok || n != 5 {
		t.Errorf("pendingBytes through the Handoff wrapper = %d, %v; want 5, true", n, ok)
	}
	s.Read(make([]byte, 5))
	if n, ok := pendingBytes(s); !ok || n != 0 {
		t.Errorf("pendingBytes after reading = %d, %v; want 0, true", n, ok)
	}
}
