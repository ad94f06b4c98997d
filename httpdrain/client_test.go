package httpdrain

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The test client is written on net.Conn, bufio and http.ReadResponse
// rather than net/http's Transport because the Transport retries a request
// on a reused connection that turns out dead, which is exactly the failure
// a keep-alive client must see and count here. It holds at most one
// connection, sends one request at a time and never retries.

// testClient sends GET requests to one address.
type testClient struct {
	addr      string
	keepAlive bool          // reuse the connection unless the server closes it
	timeout   time.Duration // for each request, dial included

	conn net.Conn
	br   *bufio.Reader
}

// errStatus is a complete response whose status was not 200.
var errStatus = errors.New("status not 200")

// get sends one GET for target and returns the response with its body read.
func (c *testClient) get(target string) (*http.Response, []byte, error) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
		if err != nil {
			return nil, nil, fmt.Errorf("dial: %w", err)
		}
		c.conn, c.br = conn, bufio.NewReader(conn)
	}
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	hdr := ""
	if !c.keepAlive {
		hdr = "Connection: close\r\n"
	}
	if _, err := io.WriteString(c.conn, "GET "+target+" HTTP/1.1\r\nHost: test\r\n"+hdr+"\r\n"); err != nil {
		c.close()
		return nil, nil, fmt.Errorf("write: %w", err)
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodGet})
	if err != nil {
		c.close()
		return nil, nil, fmt.Errorf("read response: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		c.close()
		return resp, body, fmt.Errorf("read body: %w", err)
	}
	if !c.keepAlive || resp.Close {
		c.close()
	}
	if resp.StatusCode != http.StatusOK {
		return resp, body, fmt.Errorf("%w: %s", errStatus, resp.Status)
	}
	return resp, body, nil
}

func (c *testClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.br = nil, nil
	}
}

// classify names the kind of a failed request. The order matters: a reset
// can come wrapped like a timeout, and a status error is no transport error.
func classify(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errStatus):
		return "status"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "other"
}

// failures counts failed requests by class and keeps a few examples.
type failures struct {
	mu       sync.Mutex
	n        map[string]int
	examples []string
}

func (f *failures) add(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == nil {
		f.n = make(map[string]int)
	}
	f.n[classify(err)]++
	if len(f.examples) < 5 {
		f.examples = append(f.examples, err.Error())
	}
}

func (f *failures) total() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := 0
	for _, n := range f.n {
		t += n
	}
	return t
}

func (f *failures) String() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.n) == 0 {
		return "none"
	}
	return fmt.Sprintf("%v, e.g. %s", f.n, strings.Join(f.examples, "; "))
}
