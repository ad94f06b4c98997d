package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rawServer accepts connections on 127.0.0.1 and, for each request read on
// them, calls answer with the connection and the request's header lines.
func rawServer(t *testing.T, answer func(c *net.TCPConn, req []string)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen: %v", err)
	}
	done := make(chan struct{})
	t.Cleanup(func() {
		ln.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Errorf("raw server still running 5s after close")
		}
	})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				tp := textproto.NewReader(bufio.NewReader(c))
				for {
					line, err := tp.ReadLine()
					if err != nil {
						return
					}
					req := []string{line}
					for {
						h, err := tp.ReadLine()
						if err != nil {
							return
						}
						if h == "" {
							break
						}
						req = append(req, h)
					}
					answer(c.(*net.TCPConn), req)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestClientOutcomes(t *testing.T) {
	t.Parallel()
	ok := "HTTP/1.1 200 OK\r\nContent-Length: 16\r\n\r\nhello from pid=7"
	for _, tc := range []struct {
		name    string
		answer  func(c *net.TCPConn)
		timeout time.Duration
		ok      bool
		pid     int   // for a success
		class   class // for a failure
		errHas  string
	}{
		{name: "ok", answer: write(ok), ok: true, pid: 7},
		{name: "chunked", answer: write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\npid=42\r\n0\r\n\r\n"), ok: true, pid: 42},
		{name: "no pid", answer: write("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"), ok: true},
		{name: "body until close", answer: func(c *net.TCPConn) {
			write("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\npid=9")(c)
			c.Close()
		}, ok: true, pid: 9},
		{name: "short body", answer: func(c *net.TCPConn) {
			write("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")(c)
			c.Close()
		}, class: classEOF, errHas: "read body after 5 bytes: unexpected EOF"},
		{name: "short chunked body", answer: func(c *net.TCPConn) {
			write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nhel")(c)
			c.Close()
		}, class: classEOF},
		{name: "closed without answer", answer: func(c *net.TCPConn) { c.Close() }, class: classEOF, errHas: "read response: "},
		{name: "half a header", answer: func(c *net.TCPConn) {
			write("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")(c)
			c.Close()
		}, class: classEOF},
		{name: "reset", answer: func(c *net.TCPConn) {
			c.SetLinger(0)
			c.Close()
		}, class: classReset, errHas: "connection reset by peer"},
		{name: "500", answer: write("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops"), class: classNon200, errHas: "status 500 Internal Server Error"},
		{name: "500 short body", answer: func(c *net.TCPConn) {
			write("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\no")(c)
			c.Close()
		}, class: classEOF},
		{name: "not http", answer: write("SSH-2.0-OpenSSH_9.6\r\n\r\n"), class: classOther, errHas: "malformed HTTP"},
		{name: "silent", answer: func(*net.TCPConn) { time.Sleep(time.Second) }, timeout: 100 * time.Millisecond, class: classTimeout, errHas: "i/o timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			addr := rawServer(t, func(c *net.TCPConn, _ []string) { tc.answer(c) })
			c := newClient(target{addr: addr, host: addr, uri: "/"}, true, false)
			defer c.close()
			timeout := cmp(tc.timeout, 5*time.Second)
			resp, err := c.do(t.Context(), timeout)
			if tc.ok {
				if err != nil || resp.pid != tc.pid || !resp.answered {
					t.Errorf("do() = %+v, %v; want answered with pid %d", resp, err, tc.pid)
				}
				return
			}
			if err == nil {
				t.Fatalf("do() = %+v, nil; want a %s failure", resp, tc.class)
			}
			if got := classify(err); got != tc.class {
				t.Errorf("classify(%q) = %s, want %s", err, got, tc.class)
			}
			if !strings.Contains(err.Error(), tc.errHas) {
				t.Errorf("error %q does not contain %q", err, tc.errHas)
			}
		})
	}
}

func write(s string) func(c *net.TCPConn) {
	return func(c *net.TCPConn) { io.WriteString(c, s) }
}

func cmp(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func TestClientRefused(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newClient(target{addr: addr, host: addr, uri: "/"}, false, false)
	wrote := false
	c.afterWrite = func() { wrote = true }
	_, err = c.do(t.Context(), time.Second)
	if classify(err) != classRefused {
		t.Errorf("do() against a closed port: %v (%s), want refused", err, classify(err))
	}
	if !wrote {
		t.Errorf("afterWrite not called when the dial failed; a slow request would wait for it forever")
	}
}

// TestClientConnections checks what a client sends and how it uses
// connections in each mode.
func TestClientConnections(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		keepAlive bool
		closeAt   int64 // the server says Connection: close on this request; 0 never
		wantConns int64
	}{
		{"fresh", false, 0, 5},
		{"keepalive", true, 0, 1},
		{"keepalive closed by server", true, 2, 3}, // requests 1-2, 3-4, 5
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var conns, reqs atomic.Int64
			var connHdr atomic.Value
			srv := &http.Server{
				ConnState: func(_ net.Conn, s http.ConnState) {
					if s == http.StateNew {
						conns.Add(1)
					}
				},
				Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					n := reqs.Add(1)
					connHdr.Store(fmt.Sprintf("%q %q %q", r.Header.Get("Connection"), r.Host, r.URL.RequestURI()))
					if tc.closeAt != 0 && n%tc.closeAt == 0 {
						w.Header().Set("Connection", "close")
					}
					io.WriteString(w, "pid=5")
				}),
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatalf("net.Listen: %v", err)
			}
			go srv.Serve(ln)
			t.Cleanup(func() { srv.Close() })

			addr := ln.Addr().String()
			c := newClient(target{addr: addr, host: "example.test", uri: "/a?b=c"}, tc.keepAlive, false)
			defer c.close()
			for i := range 5 {
				resp, err := c.do(t.Context(), 5*time.Second)
				if err != nil || resp.pid != 5 {
					t.Fatalf("request %d: do() = %+v, %v; want pid 5", i+1, resp, err)
				}
			}
			if got := conns.Load(); got != tc.wantConns {
				t.Errorf("5 requests used %d connections, want %d", got, tc.wantConns)
			}
			if c.dials != int64(tc.wantConns) {
				t.Errorf("the client counted %d connections, the server %d", c.dials, tc.wantConns)
			}
			want := `"close" "example.test" "/a?b=c"`
			if tc.keepAlive {
				want = `"" "example.test" "/a?b=c"`
			}
			if got := connHdr.Load(); got != want {
				t.Errorf("server saw Connection, Host, URI = %s, want %s", got, want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	opErr := func(op string, err error) error {
		return &net.OpError{Op: op, Net: "tcp", Err: err}
	}
	for _, tc := range []struct {
		err  error
		want class
	}{
		{opErr("dial", os.NewSyscallError("connect", syscall.ECONNREFUSED)), classRefused},
		{opErr("read", os.NewSyscallError("read", syscall.ECONNRESET)), classReset},
		{opErr("write", os.NewSyscallError("write", syscall.EPIPE)), classReset},
		{fmt.Errorf("request 3 on connection: %w", opErr("write", os.NewSyscallError("write", syscall.ECONNRESET))), classReset},
		{io.EOF, classEOF},
		{fmt.Errorf("read response: %w", io.ErrUnexpectedEOF), classEOF},
		{fmt.Errorf("%w: got 1 of 2 bytes", errShortBody), classEOF},
		{opErr("read", os.ErrDeadlineExceeded), classTimeout},
		{opErr("dial", context.DeadlineExceeded), classTimeout},
		{&StatusError{Code: 503, Status: "503 Service Unavailable"}, classNon200},
		{fmt.Errorf("request 2 on connection: %w", &StatusError{Code: 500, Status: "500"}), classNon200},
		{errors.New(`malformed HTTP version "SSH-2.0"`), classOther},
		{opErr("dial", os.NewSyscallError("connect", syscall.ENETUNREACH)), classOther},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%q) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestParsePID(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body string
		want int
	}{
		{"pid=123", 123},
		{"hello from pid=4567\n", 4567},
		{`{"pid=8":1}`, 8},
		{"ppid=1 pid=22", 22},
		{"pid=12abc pid=34", 34},
		{"pid=", 0},
		{"pid=x", 0},
		{"pid=0", 0},
		{"pid=99999999999999999999999", 0},
		{"no pid here", 0},
		{"", 0},
		{"pi", 0},
		{"pid=7 pid=8", 7},
		{"a\npid=31\n", 31},
	} {
		if got := parsePID([]byte(tc.body)); got != tc.want {
			t.Errorf("parsePID(%q) = %d, want %d", tc.body, got, tc.want)
		}
	}
}

func FuzzParsePID(f *testing.F) {
	f.Add([]byte("hello from pid=4567\n"))
	f.Add([]byte("ppid=1 pid=22"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := parsePID(b)
		if n < 0 {
			t.Fatalf("parsePID(%q) = %d, want >= 0", b, n)
		}
		if n > 0 && !strings.Contains(string(b), "pid=") {
			t.Fatalf("parsePID(%q) = %d from an input without pid=", b, n)
		}
	})
}

// A POST carries its small body, with the length that says where it ends,
// so the next request on the connection is read as a request.
func TestClientPost(t *testing.T) {
	t.Parallel()
	var got atomic.Value
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(r.Method + " " + string(b))
		io.WriteString(w, "pid=7")
	})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen: %v", err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()
	c := newClient(target{addr: addr, host: addr, uri: "/"}, true, true)
	defer c.close()
	for i := range 3 {
		if resp, err := c.do(t.Context(), 5*time.Second); err != nil || resp.pid != 7 {
			t.Fatalf("POST %d: do() = %+v, %v; want pid 7", i+1, resp, err)
		}
	}
	if v, _ := got.Load().(string); v != "POST "+postBody {
		t.Errorf("the server saw %q, want %q", v, "POST "+postBody)
	}
	if c.dials != 1 {
		t.Errorf("3 POSTs on a keep-alive client opened %d connections, want 1", c.dials)
	}
}
