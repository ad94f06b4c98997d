package loadgen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// The client is written on net.Conn, bufio and http.ReadResponse rather than
// net/http's Transport because the Transport retries a request it thinks is
// idempotent when a reused connection turns out dead — exactly the failure a
// keep-alive client must see and count during an upgrade — and it dials and
// pools connections on its own terms. Here one client owns at most one
// connection, sends one request at a time, never retries, and reports every
// error it met.

// errShortBody says a body ended before its Content-Length.
var errShortBody = errors.New("short body")

// StatusError is a response whose status was not 200.
type StatusError struct {
	Code   int    // such as 503
	Status string // such as "503 Service Unavailable"
}

func (e *StatusError) Error() string { return "status " + e.Status }

// aLongTimeAgo is a deadline in the past: setting it on a connection unblocks
// its pending reads and writes at once.
var aLongTimeAgo = time.Unix(1, 0)

// headSize is how much of each body is kept to look for pid=<n>.
const headSize = 1024

// client sends requests to one target, one at a time: GET, or a POST
// with a small body.
type client struct {
	addr      string
	req       []byte // the whole request, ready to write
	keepAlive bool
	readReq   *http.Request // tells http.ReadResponse the method
	dials     int64         // connections opened

	// afterWrite, if not nil, is called once the request has been written
	// or has failed before that.
	afterWrite func()

	conn net.Conn
	br   *bufio.Reader
	sent int    // requests written on conn
	buf  []byte // body read buffer
	head []byte // first headSize bytes of the last body
}

// postBody is what a POST carries: small, so a request fits one segment.
const postBody = "baton-loadgen\n"

func newClient(t target, keepAlive, post bool) *client {
	method := http.MethodGet
	if post {
		method = http.MethodPost
	}
	req := method + " " + t.uri + " HTTP/1.1\r\nHost: " + t.host + "\r\nUser-Agent: baton-loadgen\r\n"
	if !keepAlive {
		req += "Connection: close\r\n"
	}
	if post {
		req += "Content-Type: text/plain\r\nContent-Length: " + strconv.Itoa(len(postBody)) + "\r\n\r\n" + postBody
	} else {
		req += "\r\n"
	}
	return &client{
		addr:      t.addr,
		req:       []byte(req),
		keepAlive: keepAlive,
		readReq:   &http.Request{Method: method},
		buf:       make([]byte, 16<<10),
		head:      make([]byte, 0, headSize),
	}
}

// response is what a client learned from one exchange.
type response struct {
	answered bool // a status line came back
	pid      int  // from pid=<n> in a 200 body, or 0
}

// do sends one request and reads the whole response within timeout. An
// error means the request failed; if ctx is done, the error may only say
// that do was interrupted.
func (c *client) do(ctx context.Context, timeout time.Duration) (response, error) {
	deadline := time.Now().Add(timeout)
	if c.conn == nil {
		d := net.Dialer{Deadline: deadline}
		conn, err := d.DialContext(ctx, "tcp", c.addr)
		if err != nil {
			c.wrote()
			return response{}, err // "dial tcp 127.0.0.1:8080: connect: connection refused"
		}
		c.conn, c.sent = conn, 0
		c.dials++
		if c.br == nil {
			c.br = bufio.NewReader(conn)
		} else {
			c.br.Reset(conn)
		}
	}
	conn := c.conn
	c.sent++
	n := c.sent
	conn.SetDeadline(deadline)
	// A read blocked on a hung server must not hold up a cancelled run.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	resp, keep, err := c.exchange(conn)
	stop()
	if err != nil || !keep {
		c.close()
	}
	if err != nil && n > 1 {
		// A failure on a reused connection is the keep-alive race; say so.
		err = fmt.Errorf("request %d on connection: %w", n, err)
	}
	return resp, err
}

// exchange writes the request and reads the response. keep says whether the
// connection may carry another request.
func (c *client) exchange(conn net.Conn) (resp response, keep bool, err error) {
	_, err = conn.Write(c.req)
	c.wrote()
	if err != nil {
		return resp, false, err // "write tcp a->b: write: broken pipe"
	}
	r, err := http.ReadResponse(c.br, c.readReq)
	if err != nil {
		return resp, false, fmt.Errorf("read response: %w", err)
	}
	resp.answered = true
	defer r.Body.Close()
	c.head = c.head[:0]
	var got int64
	for {
		m, rerr := r.Body.Read(c.buf)
		if room := headSize - len(c.head); room > 0 {
			c.head = append(c.head, c.buf[:min(m, room)]...)
		}
		got += int64(m)
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			// net/http's body reader turns an early EOF into
			// io.ErrUnexpectedEOF, for Content-Length and chunked alike.
			return resp, false, fmt.Errorf("read body after %d bytes: %w", got, rerr)
		}
	}
	if r.ContentLength >= 0 && got != r.ContentLength {
		return resp, false, fmt.Errorf("%w: got %d of %d bytes", errShortBody, got, r.ContentLength)
	}
	keep = c.keepAlive && !r.Close
	if r.StatusCode != http.StatusOK {
		return resp, keep, &StatusError{Code: r.StatusCode, Status: r.Status}
	}
	resp.pid = parsePID(c.head)
	return resp, keep, nil
}

func (c *client) wrote() {
	if c.afterWrite != nil {
		c.afterWrite()
		c.afterWrite = nil
	}
}

func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// parsePID returns n from the first "pid=<n>" in b that is not the tail of
// a longer word (such as "ppid=1"), or 0 if there is none.
func parsePID(b []byte) int {
	for i := 0; i+4 < len(b); i++ {
		if string(b[i:i+4]) != "pid=" || (i > 0 && isWordByte(b[i-1])) {
			continue
		}
		j := i + 4
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == i+4 || (j < len(b) && isWordByte(b[j])) {
			continue
		}
		n, err := strconv.Atoi(string(b[i+4 : j]))
		if err == nil && n > 0 {
			return n
		}
	}
	return 0
}

func isWordByte(b byte) bool {
	return b == '_' || b >= '0' && b <= '9' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z'
}
