package httpdrain

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// streamer writes a line every 10ms until WrapUp says the response must
// end, then returns: the client sees a complete chunked body.
var streamer = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		if _, err := fmt.Fprintf(w, "tick %d\n", n); err != nil {
			return
		}
		rc.Flush()
		select {
		case <-WrapUp(r.Context()):
			io.WriteString(w, "end\n")
			return
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
})

// openStream sends GET /stream on a new connection and returns once the
// first line of the body has arrived, with the reader of the rest.
func openStream(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	io.WriteString(c, "GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); !strings.HasPrefix(line, "tick ") {
		t.Fatalf("stream: first line %q, %v; want a tick", line, err)
	}
	return c, br
}

// streamEnd reads a stream to its end and reports when it ended and how:
// nil for a complete body ending in "end".
func streamEnd(br *bufio.Reader) (time.Time, error) {
	last := ""
	for {
		line, err := br.ReadString('\n')
		if err == io.EOF {
			if last != "end\n" {
				return time.Now(), fmt.Errorf("complete body whose last line is %q, want %q", last, "end\n")
			}
			return time.Now(), nil
		}
		if err != nil {
			return time.Now(), err
		}
		last = line
	}
}

// Responses running when the drain begins are asked to wrap up one at a
// time, at least ClosePace apart, and each client sees a complete body.
func TestClosePaceEndsStreamsOneAtATime(t *testing.T) {
	t.Parallel()
	const (
		streams = 6
		pace    = 60 * time.Millisecond
	)
	logs := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	s := serve(t, streamer, Options{ClosePace: pace, Logger: logger})
	var readers []*bufio.Reader
	for range streams {
		_, br := openStream(t, s.addr)
		readers = append(readers, br)
	}

	begin := time.Now()
	ch := drainAsync(s.hs, 10*time.Second)
	ends := make([]time.Time, streams)
	var wg sync.WaitGroup
	for i, br := range readers {
		wg.Go(func() {
			var err error
			if ends[i], err = streamEnd(br); err != nil {
				t.Errorf("stream %d: %v; want a complete body", i, err)
			}
		})
	}
	wg.Wait()
	r := waitDrain(t, ch, 10*time.Second)
	if r.err != nil {
		t.Fatalf("Drain = %v, want nil", r.err)
	}
	slices.SortFunc(ends, time.Time.Compare)
	// The first turn comes at once; the last no sooner than (n-1) paces
	// after the drain began. (Gaps between two clients' reads are not
	// asserted one by one: each read wakes when its goroutine is
	// scheduled, which on a loaded machine shifts them both ways.)
	if span, want := ends[streams-1].Sub(begin), time.Duration(streams-1)*pace; span < want {
		t.Errorf("the last of %d streams ended %v after the drain began; with ClosePace %v, want at least %v", streams, span, pace, want)
	}
	var gaps []string
	for i := 1; i < streams; i++ {
		gaps = append(gaps, ends[i].Sub(ends[i-1]).Round(time.Millisecond).String())
	}
	t.Logf("stream ends, as the clients saw them, apart by %v", gaps)
	if out := logs.String(); !strings.Contains(out, "ended connections at a pace") || !strings.Contains(out, fmt.Sprintf("ended=%d", streams)) {
		t.Errorf("the drain did not log %d paced ends:\n%s", streams, out)
	}
}

// Without a pace every running response is asked to wrap up as the drain
// begins, and one that begins during the drain is asked at once.
func TestWrapUpWithoutPace(t *testing.T) {
	t.Parallel()
	if WrapUp(context.Background()) != nil {
		t.Error("WrapUp(context.Background()) is not nil; want nil, never closed")
	}
	s := serve(t, streamer, Options{})
	_, br := openStream(t, s.addr)
	// A second connection, idle, on which a stream is asked for once the
	// drain has begun: its request must not be sent before the drain,
	// or it would be one that was running at the start.
	late, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer late.Close()
	select {
	case <-s.accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not accept the stream's connection")
	}
	select {
	case <-s.accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not accept the idle connection")
	}

	ch := drainAsync(s.hs, 10*time.Second)
	if _, err := streamEnd(br); err != nil {
		t.Errorf("stream running as the drain began: %v; want a complete body", err)
	}
	<-s.hs.Draining()
	late.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(late, "GET /stream HTTP/1.1\r\nHost: test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(late), nil)
	if err != nil {
		// The idle sweep may have closed it first (IdleGrace passed
		// on a loaded machine): nothing to learn then.
		t.Logf("stream begun during the drain: %v (the idle connection was closed first)", err)
	} else {
		if _, err := streamEnd(bufio.NewReader(resp.Body)); err != nil {
			t.Errorf("stream begun during the drain: %v; want a complete body at once", err)
		}
		if !resp.Close {
			t.Error("stream begun during the drain: no Connection: close")
		}
	}
	if r := waitDrain(t, ch, 10*time.Second); r.err != nil {
		t.Fatalf("Drain = %v, want nil", r.err)
	}
}

// Idle connections are closed at the pace too, each only once idle past
// IdleGrace, and with FIN.
func TestClosePaceClosesIdleConns(t *testing.T) {
	t.Parallel()
	const (
		conns = 5
		grace = 20 * time.Millisecond
		pace  = 50 * time.Millisecond
	)
	s := serve(t, hello, Options{IdleGrace: grace, ClosePace: pace})
	var clients []*testClient
	for range conns {
		c := &testClient{addr: s.addr, keepAlive: true, timeout: 5 * time.Second}
		defer c.close()
		if _, _, err := c.get("/"); err != nil {
			t.Fatalf("get: %v", err)
		}
		clients = append(clients, c)
	}
	begin := time.Now()
	ch := drainAsync(s.hs, 10*time.Second)
	ends := make([]time.Time, conns)
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			if err := readEOF(t, c.conn, 5*time.Second); !errors.Is(err, io.EOF) {
				t.Errorf("idle connection %d: read = %v, want EOF", i, err)
			}
			ends[i] = time.Now()
		})
	}
	wg.Wait()
	if r := waitDrain(t, ch, 10*time.Second); r.err != nil {
		t.Fatalf("Drain = %v, want nil", r.err)
	}
	last := slices.MaxFunc(ends, time.Time.Compare)
	if span, want := last.Sub(begin), grace+time.Duration(conns-1)*pace; span < want {
		t.Errorf("the last of %d idle connections closed %v after the drain began; want at least IdleGrace + %d × ClosePace = %v", conns, span, conns-1, want)
	}
}

// A hijacked connection registered with an end func is asked to end at
// its turn (at once without a pace), and one registered without is closed
// at its turn.
func TestClosePaceHijacked(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		pace  time.Duration
		count int
	}{
		{"no pace", 0, 3},
		{"pace", 80 * time.Millisecond, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var hs *Server
			s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				conn, brw, err := http.NewResponseController(w).Hijack()
				if err != nil {
					t.Errorf("Hijack: %v", err)
					return
				}
				bye := make(chan struct{})
				var once sync.Once
				done := hs.HijackedWithEnd(conn, func() { once.Do(func() { close(bye) }) })
				brw.WriteString("hello\n")
				brw.Flush()
				go func() {
					defer done()
					defer conn.Close()
					select {
					case <-bye:
						io.WriteString(conn, "goodbye\n") // a close frame, say
					case <-time.After(10 * time.Second):
					}
				}()
			}), Options{ClosePace: tc.pace})
			hs = s.hs
			var readers []*bufio.Reader
			for range tc.count {
				c, err := net.Dial("tcp", s.addr)
				if err != nil {
					t.Fatalf("dial: %v", err)
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
				br := bufio.NewReader(c)
				if line, err := br.ReadString('\n'); line != "hello\n" {
					t.Fatalf("hijacked connection said %q, %v; want %q", line, err, "hello\n")
				}
				readers = append(readers, br)
			}
			begin := time.Now()
			ch := drainAsync(hs, 10*time.Second)
			var last time.Time
			for i, br := range readers {
				if line, err := br.ReadString('\n'); line != "goodbye\n" {
					t.Errorf("hijacked connection %d said %q, %v; want %q", i, line, err, "goodbye\n")
				}
				last = time.Now()
			}
			r := waitDrain(t, ch, 10*time.Second)
			if r.err != nil {
				t.Fatalf("Drain = %v, want nil", r.err)
			}
			if want := time.Duration(tc.count-1) * tc.pace; last.Sub(begin) < want {
				t.Errorf("the last goodbye came %v after the drain began; want at least %v", last.Sub(begin), want)
			}
		})
	}
}

// At the deadline (or when the application cancels the drain's context to
// stop at once) every response still running learns it through WrapUp,
// and the connections are closed.
func TestDeadlineWrapsUp(t *testing.T) {
	t.Parallel()
	wrapped := make(chan struct{}, 1)
	s := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tick\n")
		http.NewResponseController(w).Flush()
		<-WrapUp(r.Context())
		wrapped <- struct{}{}
	}), Options{ClosePace: time.Hour})
	c, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	if _, err := http.ReadResponse(br, nil); err != nil {
		t.Fatalf("response: %v", err)
	}
	// Two requests: the first turn is taken at once even with an hour's
	// pace, so hold a second one that must wait for the deadline.
	c2, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c2.Close()
	io.WriteString(c2, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := http.ReadResponse(bufio.NewReader(c2), nil); err != nil {
		t.Fatalf("response: %v", err)
	}
	r := waitDrain(t, drainAsync(s.hs, 300*time.Millisecond), 10*time.Second)
	var de *DeadlineError
	if !errors.As(r.err, &de) {
		t.Fatalf("Drain = %v, want a *DeadlineError", r.err)
	}
	for i := range 2 {
		select {
		case <-wrapped:
		case <-time.After(5 * time.Second):
			t.Fatalf("handler %d never learnt through WrapUp that it must end", i)
		}
	}
}

// lockedBuffer is a log destination shared by the drain's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
