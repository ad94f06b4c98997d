package httpdrain

import (
	"context"
	"net"
	"slices"
	"sync"
	"time"
)

// A drain ends what cannot be handed over: idle connections, responses
// that run on (streams), hijacked connections. Without a ClosePace it asks
// all of them at once as it begins, and their clients all come back at
// once, to the successor: a reconnect storm when a generation held
// thousands. With one, the drain ends them one at a time, each turn
// ClosePace after the last, gracefully where the protocol allows: an idle
// connection is closed with an empty receive buffer (the client sees FIN),
// a response is asked to end through WrapUp (the client sees a complete
// body), a hijacked connection's owner is asked to end it in its own
// protocol (HijackedWithEnd). The deadline still ends whatever is left at
// once.

// request is one handler running.
type request struct {
	c     net.Conn  // its connection, as ConnState knows it; nil if unknown
	start time.Time // when the handler began
	asked bool      // the drain asked it to wrap up; under Server.mu

	once sync.Once
	wrap chan struct{} // closed by wrapUp
}

func (q *request) wrapUp() { q.once.Do(func() { close(q.wrap) }) }

// requestKey is the context key of a handler's *request.
type requestKey struct{}

// netConnKey is the context key of a request's net.Conn, as ConnState
// knows it.
type netConnKey struct{}

// WrapUp returns a channel that is closed when the Server draining the
// request whose context ctx is (or derives from) wants its response to end:
// a handler that streams (server-sent events, long polling, a chunked
// feed) watches it, finishes its response cleanly and returns, and its
// client sees a complete body rather than a connection cut at the drain's
// deadline.
//
// It is closed as the drain begins, or, with Options.ClosePace, at the
// request's turn among the connections the drain ends; at once for a
// request that begins during the drain (its connection is leaving); and at
// the drain's deadline at the latest. For a context that does not come
// from a Server's handler it returns nil, which is never closed.
func WrapUp(ctx context.Context) <-chan struct{} {
	if q, ok := ctx.Value(requestKey{}).(*request); ok {
		return q.wrap
	}
	return nil
}

// begin registers a handler as it starts.
func (s *Server) begin(c net.Conn) *request {
	q := &request{c: c, start: time.Now(), wrap: make(chan struct{})}
	s.mu.Lock()
	draining := s.isDraining.Load()
	if !draining {
		s.requests[q] = struct{}{}
	}
	s.mu.Unlock()
	if draining {
		// A request that begins during the drain is on a connection
		// that leaves after it (Connection: close, or handed over once
		// idle): a stream begun now ends at once, and its client comes
		// back to the successor.
		q.asked = true
		q.wrapUp()
	}
	return q
}

// end unregisters a handler as it returns. If the drain ended its response,
// its connection is done with: closing it once idle costs no turn.
func (s *Server) end(q *request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.requests[q]; !ok {
		return
	}
	delete(s.requests, q)
	if q.asked && q.c != nil {
		if ci, ok := s.conns[q.c]; ok {
			ci.ended = true
			s.conns[q.c] = ci
		}
	}
}

// endAllNow asks every running response and every hijacked connection
// registered with an end func to end: the start of a drain without a pace.
func (s *Server) endAllNow() {
	s.mu.Lock()
	var qs []*request
	for q := range s.requests {
		if !q.asked {
			q.asked = true
			qs = append(qs, q)
		}
	}
	var ends []func()
	for h := range s.hijacked {
		if !h.ended && h.end != nil {
			h.ended = true
			ends = append(ends, h.end)
		}
	}
	s.mu.Unlock()
	for _, q := range qs {
		q.wrapUp()
	}
	for _, f := range ends {
		f()
	}
}

// wrapUpAll closes every WrapUp channel: at the deadline, handlers whose
// connections are being closed learn it that way too.
func (s *Server) wrapUpAll() {
	s.mu.Lock()
	qs := make([]*request, 0, len(s.requests))
	for q := range s.requests {
		q.asked = true
		qs = append(qs, q)
	}
	s.mu.Unlock()
	for _, q := range qs {
		q.wrapUp()
	}
}

// pacer is what the drain goroutine, its only user, knows of the turns.
type pacer struct {
	next        time.Time // the earliest time of the next turn
	n           int       // connections ended at a turn
	first, last time.Time // of the first and last turn
}

func (p *pacer) took(now time.Time, pace time.Duration) {
	if p.n == 0 {
		p.first = now
	}
	p.n++
	p.last = now
	p.next = now.Add(pace)
}

// unasked counts the running responses the drain has not asked to end.
func (s *Server) unasked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for q := range s.requests {
		if !q.asked {
			n++
		}
	}
	return n
}

// takeTurn ends one connection if a turn is due, and reports whether it
// did: the idle connection that has waited longest (of idle, those that
// may be closed now), else the response that has run longest, else the
// hijacked connection registered first.
func (s *Server) takeTurn(now time.Time, idle []candidate) bool {
	if s.pace == 0 || now.Before(s.paced.next) {
		return false
	}
	slices.SortFunc(idle, func(a, b candidate) int { return a.ci.since.Compare(b.ci.since) })
	for _, k := range idle {
		if s.closeIdle(k, now) {
			s.paced.took(now, s.pace)
			return true
		}
	}

	s.mu.Lock()
	var oldest *request
	for q := range s.requests {
		if !q.asked && (oldest == nil || q.start.Before(oldest.start)) {
			oldest = q
		}
	}
	if oldest != nil {
		oldest.asked = true
		s.mu.Unlock()
		oldest.wrapUp()
		s.paced.took(now, s.pace)
		s.log.Debug("httpdrain: asked a response to wrap up", "remote", remote(oldest.c), "running", now.Sub(oldest.start))
		return true
	}
	var first *hijack
	for h := range s.hijacked {
		if !h.ended && (first == nil || h.since.Before(first.since)) {
			first = h
		}
	}
	if first == nil {
		s.mu.Unlock()
		return false
	}
	first.ended = true
	s.mu.Unlock()
	if first.end != nil {
		first.end()
	} else {
		first.c.Close()
	}
	s.paced.took(now, s.pace)
	s.log.Debug("httpdrain: ended a hijacked connection", "remote", first.c.RemoteAddr(), "graceful", first.end != nil)
	return true
}

// logPaced says how many connections the drain ended at its pace, and over
// how long.
func (s *Server) logPaced() {
	if s.paced.n == 0 {
		return
	}
	s.log.Info("httpdrain: ended connections at a pace", "ended", s.paced.n, "over", s.paced.last.Sub(s.paced.first).Round(time.Millisecond), "pace", s.pace)
}

func remote(c net.Conn) string {
	if c == nil {
		return ""
	}
	return c.RemoteAddr().String()
}
