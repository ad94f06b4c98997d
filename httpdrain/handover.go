package httpdrain

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"
)

// DefaultHandoffName is the HandoffName used when Options.HandoffName is
// empty.
const DefaultHandoffName = "http"

// Handoff passes an established connection to the successor generation.
// A *baton.Upgrader implements it; httpdrain imports nothing of baton's.
//
// HandOver returns nil once the successor owns the connection: this
// process's descriptor is then closed. On any error the connection is
// still this process's, untouched.
type Handoff interface {
	HandOver(ctx context.Context, name string, c syscall.Conn, state []byte) error
}

// aLongTimeAgo is a read deadline that has already passed: setting it
// wakes a Read blocked on the connection at once (as net/http does to
// abort its background read).
var aLongTimeAgo = time.Unix(1, 0)

// listener wraps every connection it accepts in a *conn, so that the
// drain can see where net/http's reads stand.
type listener struct {
	net.Listener
	s *Server
}

func (l listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.s.wrap(c), nil
}

// wrap returns c as net/http is to serve it: a *conn for a plaintext
// connection with a descriptor, which may be handed to the successor; c
// itself otherwise. A *tls.Conn is never wrapped: net/http must see it as
// one for the handshake and ALPN, and its reads are decrypted ahead of
// net/http's, so no byte count of ours could prove a request untouched.
func (s *Server) wrap(c net.Conn) net.Conn {
	if _, ok := c.(*tls.Conn); ok {
		return c
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		// A wrapper that shows its connection, such as the
		// baton.HandedConn a successor accepts: it reads nothing ahead,
		// so its descriptor can travel on.
		if nc, isNC := c.(interface{ NetConn() net.Conn }); isNC {
			sc, ok = nc.NetConn().(syscall.Conn)
		}
	}
	if !ok {
		return c
	}
	return &conn{Conn: c, sc: sc, s: s}
}

// conn is an accepted plaintext connection. It records what net/http
// reads, so that during a drain it can tell when a connection is idle
// with not a byte of its next request consumed, and then hand it over
// instead of closing it.
//
// The proof rests on how net/http reads an HTTP/1 connection. Every byte
// goes through one bufio.Reader per connection (the conn goroutine's, and
// a one-byte background read during a handler, aborted and waited for
// before the connection turns idle; a byte it caught is given back before
// any new Read). bufio.Reader moves unread bytes to the front of its
// buffer before it reads (fill), so a Read into the very start of that
// buffer means nothing is buffered. The connection's first Read fills that
// buffer from its start, which tells us where the start is. So: a Read
// that began while the connection was idle (ConnState StateIdle, set after
// the previous response was written) into the start of the buffer, or the
// first Read of a new connection, has nothing of the next request behind
// it. If that Read is then interrupted and returns nothing, the next
// request is wholly in the socket (or still on its way): handing the
// socket over loses nothing. Bytes waiting in the kernel travel with it,
// unread.
type conn struct {
	net.Conn              // as accepted
	sc       syscall.Conn // its descriptor, for HandOver
	s        *Server

	mu        sync.Mutex
	state     http.ConnState // as the ConnState hook last saw it
	got       int64          // bytes Read has returned
	buf       []byte         // the first Read's p to its capacity: net/http's buffer
	reading   bool           // a Read is blocked in the connection
	clean     bool           // that Read has nothing of a request behind it
	interrupt bool           // the drain has set a past deadline to wake it
	deadline  time.Time      // the read deadline net/http asked for
	kept      bool           // a handover failed: drain it here, as without a Handoff
	requests  int            // requests begun since the drain began
	handed    bool           // the successor owns it
}

// NetConn returns the connection as accepted, for a ConnState hook or
// handler that needs its concrete type.
func (c *conn) NetConn() net.Conn { return c.Conn }

// observe is called by the ConnState hook.
func (c *conn) observe(st http.ConnState) {
	c.mu.Lock()
	c.state = st
	c.mu.Unlock()
}

// keepAlive is called as each request begins during a drain, and reports
// whether its response may leave the connection open: only if c can still
// be handed over once it is idle.
//
// The first request begun during the drain may: it is one that net/http
// was reading, or had read, as the drain began (the drain woke its Read
// too late), and once it is answered the connection's next Read is clean
// and hands it over at once. A second one may not: the client sends
// requests before their predecessors' responses (pipelining), so its
// connection may never be idle with nothing buffered; "Connection: close"
// makes it leave, as without a Handoff.
func (c *conn) keepAlive() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.requests++
	return !c.kept && !c.handed && c.requests == 1
}

// blocked reports whether net/http waits in Read, having consumed what it
// read before. A connection that is not blocked is busy with bytes it has
// read, whatever ConnState says (it sets StateActive only after reading a
// request), so the idle sweep must not close it.
func (c *conn) blocked() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.reading
}

// Read is net/http's only way into the connection; see conn.
func (c *conn) Read(p []byte) (int, error) {
	c.mu.Lock()
	if c.handed {
		c.mu.Unlock()
		// EOF: net/http takes it for a client that left, and closes
		// its side without a word.
		return 0, io.EOF
	}
	if c.isBackgroundRead(p) {
		c.mu.Unlock()
		// net/http's background read, during a handler, watches for the
		// client's close and keeps a byte of a next request if one
		// comes (pipelining, or a client that sends as soon as the
		// response arrives, before the handler has returned). Such a
		// byte would spoil the next idle Read, and the connection could
		// not be handed over. So it only watches: a byte that arrives
		// stays in the socket, and net/http reads it after the
		// response, where it reads every request.
		eof, err := waitUnreadable(c.sc)
		if !errors.Is(err, errors.ErrUnsupported) && !eof {
			return 0, err // the abort's deadline, or a failure
		}
		return c.Conn.Read(p) // the client's EOF, as it would come
	}
	if len(p) > 0 && c.buf == nil {
		c.buf = p[:cap(p)]
	}
	c.clean = c.got == 0 ||
		c.state == http.StateIdle && len(p) > 0 && &p[0] == &c.buf[0] && cap(p) == cap(c.buf)
	if c.clean && c.s.handingOver() && !c.kept {
		// Already draining: nothing to interrupt, and not reading at
		// all proves nothing was read.
		c.mu.Unlock()
		if c.handOver() {
			return 0, io.EOF
		}
		c.mu.Lock()
	}
	c.reading = true
	c.mu.Unlock()

	for {
		n, err := c.Conn.Read(p)
		if h := c.s.testHookRead; h != nil {
			h(c, n)
		}
		c.mu.Lock()
		if !c.interrupt {
			c.reading = false
			c.got += int64(n)
			c.mu.Unlock()
			return n, err
		}
		c.interrupt = false
		if n > 0 || !isTimeout(err) {
			// A request (or the client's FIN) came first: it is served
			// here, and the connection handed over after it (keepAlive).
			c.reading = false
			c.got += int64(n)
			c.Conn.SetReadDeadline(c.deadline)
			c.mu.Unlock()
			c.s.log.Debug("httpdrain: not handed over: a request arrived first", "remote", c.RemoteAddr(), "read", n, "err", err)
			return n, err
		}
		c.mu.Unlock()
		// Interrupted with nothing read. (Had net/http's own deadline
		// expired at the same moment, the connection was idle all the
		// same: the successor's timeouts take over.)
		if c.handOver() {
			return 0, io.EOF
		}
		c.mu.Lock()
		c.Conn.SetReadDeadline(c.deadline)
		c.mu.Unlock()
	}
}

// isBackgroundRead reports whether p is net/http's background read: a
// one-byte read while a request is active, into a byte of its own rather
// than the buffer requests are read into (reads for a request body go
// through that buffer, or bypass it only with len(p) at least its size).
// c.mu is held.
func (c *conn) isBackgroundRead(p []byte) bool {
	if c.state != http.StateActive || len(p) != 1 || cap(p) != 1 || len(c.buf) == 0 {
		return false
	}
	// A one-byte read into net/http's buffer can only be into its last
	// byte.
	return &p[0] != &c.buf[len(c.buf)-1]
}

// handOver passes c to the successor and reports whether it took it. On
// failure c is kept and served here as before.
func (c *conn) handOver() bool {
	err := c.s.handoff.HandOver(c.s.handCtx, c.s.handName, c.sc, nil)
	c.mu.Lock()
	if err != nil {
		c.kept = true
		c.mu.Unlock()
		c.s.handoverFailed(c, err)
		return false
	}
	c.handed = true
	c.reading = false
	c.mu.Unlock()
	// HandOver closed our descriptor; closing again is harmless on a
	// net.Conn and makes sure nothing of this process can touch the
	// socket (no write, no shutdown(2) through CloseWrite) from now on.
	c.Conn.Close()
	c.s.handed.Add(1)
	c.s.log.Debug("httpdrain: handed over", "remote", c.RemoteAddr())
	return true
}

// wake interrupts a Read that is blocked with nothing of a request behind
// it, so that it hands the connection over. It reports whether c may still
// be handed over: false once it is kept, or while part of a request is
// buffered (then the drain treats it as it would without a Handoff).
func (c *conn) wake() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.kept || c.requests > 1:
		return false
	case c.handed || c.interrupt:
		return true
	case !c.reading:
		return true // busy with a request; its next Read decides
	case !c.clean:
		return false
	}
	c.interrupt = true
	// Under c.mu, so that net/http cannot set its own deadline in
	// between; SetReadDeadline below keeps ours while interrupt is set.
	c.Conn.SetReadDeadline(aLongTimeAgo)
	if h := c.s.testHookWoken; h != nil {
		h(c)
	}
	return true
}

func (c *conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	if c.interrupt || c.handed {
		return nil // Read restores it
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

func (c *conn) Close() error {
	c.mu.Lock()
	handed := c.handed
	c.mu.Unlock()
	if handed {
		return nil // closed in handOver; the socket is the successor's
	}
	return c.Conn.Close()
}

// CloseWrite keeps net/http's half-close (closeWriteAndWait) working.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps sendfile(2) and splice(2) for responses served from files.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// writerOnly hides a ReaderFrom, so io.Copy does not call it back.
type writerOnly struct{ io.Writer }

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// connKey is the context key under which ConnContext stores the *conn.
type connKey struct{}

// handingOver reports whether connections are being handed over now.
func (s *Server) handingOver() bool {
	return s.handoff != nil && s.isDraining.Load() && !s.handoffBroken.Load()
}

// handoverFailed notes a failed HandOver. Any failure (no successor, it
// refused, the link broke) is taken to hold for every connection: from
// then on every response says "Connection: close" and idle connections
// are closed as without a Handoff, rather than each trying and failing in
// turn while its client waits.
func (s *Server) handoverFailed(c *conn, err error) {
	if s.handoffBroken.CompareAndSwap(false, true) {
		s.log.Warn("httpdrain: cannot hand connections over; closing them instead", "remote", c.RemoteAddr(), "err", err)
	}
}

// closeAfter reports whether the response to r must close its connection:
// always while draining, unless the connection can still be handed over.
func (s *Server) closeAfter(r *http.Request) bool {
	if !s.isDraining.Load() {
		return false
	}
	if !s.handingOver() {
		return true
	}
	c, ok := r.Context().Value(connKey{}).(*conn)
	return !ok || !c.keepAlive()
}
