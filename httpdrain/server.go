package httpdrain

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultIdleGrace is the IdleGrace used when Options.IdleGrace is zero.
//
// A keep-alive client under load sends its next request within
// milliseconds, so it is answered with "Connection: close" long before half
// a second has passed; a connection silent for that long is most likely
// parked in a client's pool. Closing it races only with a request sent in
// the last network round trip, which 500 ms of silence makes unlikely. The
// value is far below the drain deadlines used in practice (seconds), so idle
// connections never hold a drain up, and above the round trip of all but
// the slowest links, so a TLS handshake in progress is not cut.
const DefaultIdleGrace = 500 * time.Millisecond

// Options configures a Server. The zero value is ready to use.
type Options struct {
	// IdleGrace is how long a connection must have been idle, or new with
	// no request yet, during a drain before Drain closes it. Defaults to
	// DefaultIdleGrace.
	IdleGrace time.Duration

	// Logger receives what Drain does. Defaults to nil: silent.
	Logger *slog.Logger

	// Handoff, if set, lets Drain pass idle plaintext HTTP/1 connections
	// to the successor instead of closing them, so that keep-alive
	// clients keep their connections across an upgrade; a
	// *baton.Upgrader is one. The successor serves them with its own
	// Server: Serve the listener its Handed(HandoffName) returns. TLS
	// and HTTP/2 connections are drained as without it. Defaults to nil:
	// every connection is drained here.
	Handoff Handoff

	// HandoffName is the name connections are handed over under.
	// Defaults to DefaultHandoffName.
	HandoffName string

	// ClosePace, if positive, is the least time between two connections
	// the drain ends, so that the clients of a generation that holds
	// many long-lived connections come back one at a time rather than
	// in one storm. It applies to what cannot be handed over: idle
	// connections (still only once idle for IdleGrace), responses still
	// running when the drain began (their handlers learn it through
	// WrapUp) and connections passed to Hijacked or HijackedWithEnd.
	// The drain's deadline still ends whatever is left at once.
	//
	// The trade-off: a generation with n such connections drains for
	// n times ClosePace at least, and runs that much longer beside its
	// successor; give the drain a deadline to match, or the rest is
	// cut there. Defaults to 0: no pace; every such connection is asked
	// to end as soon as the drain begins.
	ClosePace time.Duration
}

// Server serves an *http.Server on any number of listeners and drains it
// without failing requests. Create it with New.
type Server struct {
	srv   *http.Server
	grace time.Duration
	log   *slog.Logger

	draining   chan struct{} // closed when Drain starts
	isDraining atomic.Bool   // the same fact, cheap to read on every request
	started    atomic.Bool   // a Drain call has claimed the drain
	drained    chan struct{} // closed when the drain is over
	gone       chan struct{} // a connection left during the drain: look again now
	drainErr   error         // the drain's result, written before drained is closed
	running    atomic.Int64  // handlers in progress

	handoff       Handoff         // nil: no handover
	handName      string          // Options.HandoffName
	handCtx       context.Context // Drain's, written before isDraining is set
	handoffBroken atomic.Bool     // a HandOver failed: drain the rest here
	handed        atomic.Int64    // connections handed over

	pace  time.Duration // Options.ClosePace
	paced pacer         // owned by the drain goroutine

	// Test hooks, nil in production: called by conn.Read when its read
	// returns (before it looks at the drain) and by conn.wake once it has
	// set the past deadline, so a test can put a request exactly into
	// the window between the two.
	testHookRead  func(c *conn, n int)
	testHookWoken func(c *conn)

	// mu guards the tables below. They are written from the ConnState hook
	// on every connection's goroutine, so a mutex (as in net/http) rather
	// than an owning goroutine, which would make every transition wait.
	mu        sync.Mutex
	listeners map[*net.Listener]struct{} // keyed by address: a Listener need not be comparable
	serving   int                        // Serve calls that have not returned
	conns     map[net.Conn]connInfo      // open HTTP connections
	hijacked  map[*hijack]struct{}       // connections passed to Hijacked
	requests  map[*request]struct{}      // handlers running
	finished  bool                       // Drain has returned or hit its deadline
}

// hijack is one call to Hijacked; a pointer so that the same net.Conn can be
// registered twice without one done func untracking the other.
type hijack struct {
	c     net.Conn
	end   func()    // HijackedWithEnd's; nil: close c
	since time.Time // registered
	ended bool      // end was called (or c closed) by the drain
}

// New prepares srv to be served and drained: it wraps srv.Handler (nil means
// http.DefaultServeMux) and chains srv.ConnState, so it must be called before
// srv serves anything, and srv must then be served only through the
// returned Server's Serve.
func New(srv *http.Server, o Options) *Server {
	s := &Server{
		srv:       srv,
		grace:     o.IdleGrace,
		log:       o.Logger,
		draining:  make(chan struct{}),
		drained:   make(chan struct{}),
		gone:      make(chan struct{}, 1),
		listeners: make(map[*net.Listener]struct{}),
		conns:     make(map[net.Conn]connInfo),
		hijacked:  make(map[*hijack]struct{}),
		requests:  make(map[*request]struct{}),
		handoff:   o.Handoff,
		pace:      max(o.ClosePace, 0),
		handName:  o.HandoffName,
	}
	if s.handName == "" {
		s.handName = DefaultHandoffName
	}
	if s.grace <= 0 {
		s.grace = DefaultIdleGrace
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	h := srv.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	srv.Handler = handler{s: s, h: h}
	next := srv.ConnState
	srv.ConnState = func(c net.Conn, st http.ConnState) {
		s.track(c, st)
		if next != nil {
			next(c, st)
		}
	}
	// The handler must know its connection: to decide whether its
	// response may keep it open during a drain (closeAfter), and to tell
	// the pacer that a connection whose response it ended is done with
	// (request.c).
	nextCtx := srv.ConnContext
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if nextCtx != nil {
			ctx = nextCtx(ctx, c)
		}
		ctx = context.WithValue(ctx, netConnKey{}, c)
		if hc, ok := c.(*conn); ok {
			ctx = context.WithValue(ctx, connKey{}, hc)
		}
		return ctx
	}
	return s
}

// handler wraps the user's handler.
type handler struct {
	s *Server
	h http.Handler
}

func (h handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Counted so that Drain can wait for handlers whose connection is
	// already gone from ConnState's view: hijacked, or about to be passed
	// to Hijacked.
	h.s.running.Add(1)
	defer h.s.running.Add(-1)
	c, _ := r.Context().Value(netConnKey{}).(net.Conn)
	req := h.s.begin(c)
	defer h.s.end(req)
	r = r.WithContext(context.WithValue(r.Context(), requestKey{}, req))
	if h.s.closeAfter(r) {
		// net/http closes the connection after this response; on HTTP/2
		// it sends GOAWAY. The client leaves without losing anything.
		// A connection that can still be handed over stays open: once
		// idle it goes to the successor, and its client never notices.
		w.Header().Set("Connection", "close")
	}
	h.h.ServeHTTP(w, r)
}

// Serve accepts connections on l and serves them with the wrapped
// http.Server, like http.Server.Serve. It may be called for several
// listeners at once. It always closes l, and returns http.ErrServerClosed
// once Drain has started.
//
// A *net.UnixListener shared with another process must have
// SetUnlinkOnClose(false), or closing it removes the socket file from under
// the other process.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.isDraining.Load() {
		s.mu.Unlock()
		l.Close()
		return http.ErrServerClosed
	}
	key := &l
	s.listeners[key] = struct{}{}
	s.serving++
	s.mu.Unlock()

	sl := l
	if s.handoff != nil {
		// Wrapped only with a Handoff: without one, ConnState hooks and
		// handlers see the connections exactly as l returns them.
		sl = listener{Listener: l, s: s}
	}
	err := s.srv.Serve(sl)

	s.mu.Lock()
	delete(s.listeners, key)
	s.serving--
	s.mu.Unlock()
	if s.isDraining.Load() {
		// Drain closed l: Accept's "use of closed network connection"
		// is the expected way out, not a failure.
		return http.ErrServerClosed
	}
	return err
}

// Draining returns a channel that is closed when Drain starts. Handlers of
// long-lived connections (WebSockets, streams) watch it to say goodbye.
func (s *Server) Draining() <-chan struct{} { return s.draining }

// Hijacked tracks a connection taken over with http.Hijacker, which
// net/http no longer sees: Drain waits for it and closes it at its deadline
// (with a ClosePace, at its turn). Call it before the handler returns, and
// call done once c is closed; done may be called more than once. If Drain
// has already returned or hit its deadline, Hijacked closes c at once.
func (s *Server) Hijacked(c net.Conn) (done func()) {
	return s.HijackedWithEnd(c, nil)
}

// HijackedWithEnd is Hijacked for a connection whose owner can end it
// gracefully in its own protocol (a WebSocket close frame, at a message
// boundary): the drain calls end, once, when the connection's turn comes
// (at once when the drain begins without a ClosePace, and after the
// connections before it with one), and the owner then closes c and calls
// done. end must not block; a nil end means c.Close. The drain's deadline
// closes c whatever end did.
func (s *Server) HijackedWithEnd(c net.Conn, end func()) (done func()) {
	h := &hijack{c: c, end: end, since: time.Now()}
	s.mu.Lock()
	if s.finished {
		s.mu.Unlock()
		c.Close()
		return func() {}
	}
	s.hijacked[h] = struct{}{}
	now := s.isDraining.Load() && s.pace == 0 && end != nil
	if now {
		h.ended = true
	}
	s.mu.Unlock()
	if now {
		// Without a pace every such connection is asked to end as
		// the drain begins; this one came after.
		end()
	}
	return func() {
		s.mu.Lock()
		delete(s.hijacked, h)
		s.mu.Unlock()
	}
}
