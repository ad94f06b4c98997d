package quicroute

import (
	"context"
	"io"
	"sync"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Conns tracks a generation's QUIC connections from their first packet to
// their end, so that Drain knows when the last one is done. Install it
// before serving: Transport.ConnContext = c.TransportConnContext and
// http3.Server.ConnContext = c.HTTP3ConnContext.
type Conns struct {
	mu      sync.Mutex
	live    map[*connEntry]struct{}
	changed chan struct{} // closed, and replaced, on every change of live
	total   uint64
}

// connEntry is one QUIC connection; conn is set once HTTP/3 serves it.
type connEntry struct {
	conn *quic.Conn
}

type entryKey struct{}

// NewConns returns an empty Conns.
func NewConns() *Conns {
	return &Conns{live: make(map[*connEntry]struct{}), changed: make(chan struct{})}
}

// TransportConnContext is for quic.Transport.ConnContext: quic-go calls it
// for every connection a client opens, and cancels ctx when the
// connection ends, handshake or not.
func (c *Conns) TransportConnContext(ctx context.Context, _ *quic.ClientInfo) (context.Context, error) {
	e := &connEntry{}
	c.mu.Lock()
	c.live[e] = struct{}{}
	c.total++
	c.notify()
	c.mu.Unlock()
	context.AfterFunc(ctx, func() {
		c.mu.Lock()
		delete(c.live, e)
		c.notify()
		c.mu.Unlock()
	})
	return context.WithValue(ctx, entryKey{}, e), nil
}

// HTTP3ConnContext is for http3.Server.ConnContext: HTTP/3 serves the
// connection from now on. ctx derives from the one TransportConnContext
// returned.
func (c *Conns) HTTP3ConnContext(ctx context.Context, conn *quic.Conn) context.Context {
	if e, ok := ctx.Value(entryKey{}).(*connEntry); ok {
		c.mu.Lock()
		e.conn = conn
		c.notify()
		c.mu.Unlock()
	}
	return ctx
}

// notify wakes the waiters; the caller holds mu.
func (c *Conns) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Live returns how many connections are open, and how many of them HTTP/3
// does not serve yet (their handshake is under way).
func (c *Conns) Live() (live, handshaking int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count()
}

func (c *Conns) count() (live, handshaking int) {
	for e := range c.live {
		if e.conn == nil {
			handshaking++
		}
	}
	return len(c.live), handshaking
}

// Total returns how many connections were ever opened.
func (c *Conns) Total() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.total
}

// wait returns when cond holds (on the counts, checked under mu) or ctx is
// done, and whether cond held.
func (c *Conns) wait(ctx context.Context, cond func(live, handshaking int) bool) bool {
	for {
		c.mu.Lock()
		ok := cond(c.count())
		ch := c.changed
		c.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// DrainResult says how a drain ended.
type DrainResult struct {
	Conns      int // open when the drain began
	AtDeadline int // still open at the deadline, closed with H3_NO_ERROR
	Refused    int // handshakes still under way at the deadline, refused
}

// Drain retires a generation once Exit is closed:
//
//  1. It lets the handshakes under way finish, so that HTTP/3 serves
//     their connections, which then learn of the drain like the rest.
//     After a handover no new ones come: the Router no longer reads the
//     socket, and new connections are the successor's.
//  2. It closes ln, the QUIC listener srv serves (ServeListener does not
//     close it). On the final stop, where the Router reads on, a client
//     that connects from now on is refused (CONNECTION_REFUSED, or no
//     answer): the service is going away.
//  3. srv.Shutdown: GOAWAY on every connection; requests in progress
//     run on; a client closes a connection with H3_NO_ERROR once its
//     requests are done, and opens its next ones on a new connection,
//     which the successor accepts. Drain waits until the last connection
//     has ended: a client's close reaches this generation through the
//     Router.
//
// At ctx's deadline srv closes the connections still open with
// H3_NO_ERROR (aborting their requests), and Drain closes any left the
// same way, so that no client waits for an idle timeout. It returns
// ctx's error if the deadline came first; a handler that ignores its
// request's context may then still run.
func (c *Conns) Drain(ctx context.Context, srv *http3.Server, ln io.Closer) (DrainResult, error) {
	var res DrainResult
	res.Conns, _ = c.Live()
	c.wait(ctx, func(_, handshaking int) bool { return handshaking == 0 })
	_, res.Refused = c.Live()
	ln.Close()
	// Shutdown closes the connections left at ctx's deadline itself;
	// run it on a context of its own to count them first.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- srv.Shutdown(sctx) }()
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		live, handshaking := c.Live()
		res.AtDeadline = live - handshaking
		// Shutdown now closes every connection with H3_NO_ERROR, and
		// returns once every handler has: not waited for, since a
		// handler that ignores its request's context would hold the
		// drain past its deadline. Its connection is closed all the
		// same.
		cancel()
		err = ctx.Err()
	}
	if c.wait(ctx, func(live, _ int) bool { return live == 0 }) {
		return res, err
	}
	c.mu.Lock()
	var left []*quic.Conn
	for e := range c.live {
		if e.conn != nil {
			left = append(left, e.conn)
		}
	}
	c.mu.Unlock()
	for _, conn := range left {
		conn.CloseWithError(quic.ApplicationErrorCode(http3.ErrCodeNoError), "")
	}
	if err == nil {
		err = ctx.Err()
	}
	return res, err
}
