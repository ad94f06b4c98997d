package httpdrain

import (
	"context"
	"fmt"
	"net"
	"time"
)

// pollInterval is how often Drain looks at the connections. Each look is a
// map walk under a mutex plus one ioctl per idle candidate, so 5 ms costs
// nothing measurable and keeps Drain from lingering once the last
// connection is gone.
const pollInterval = 5 * time.Millisecond

// DeadlineError is returned by Drain when its context ends before every
// connection has finished. It unwraps to the context's error.
type DeadlineError struct {
	Active   int   // HTTP connections still open at the deadline, closed with http.Server.Close
	Hijacked int   // connections passed to Hijacked, closed at the deadline
	Running  int   // handlers still running once the connections were closed: deaf to their request's context
	Err      error // the context's error
}

func (e *DeadlineError) Error() string {
	msg := fmt.Sprintf("httpdrain: deadline: closed %d active and %d hijacked connections", e.Active, e.Hijacked)
	if e.Running > 0 {
		msg += fmt.Sprintf("; handlers still running: %d", e.Running)
	}
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *DeadlineError) Unwrap() error { return e.Err }

// Drain stops accepting, lets every request in progress finish and every
// client leave, then shuts the http.Server down and returns nil. If ctx ends
// first it closes whatever remains and returns a *DeadlineError that wraps
// ctx.Err(). The package documentation describes the steps.
//
// Drain may be called more than once: later calls wait for the first one,
// or for their own ctx, and return its result.
func (s *Server) Drain(ctx context.Context) error {
	if !s.started.CompareAndSwap(false, true) {
		select {
		case <-s.drained:
			return s.drainErr
		case <-ctx.Done():
			return fmt.Errorf("httpdrain: waiting for a drain started by another call: %w", ctx.Err())
		}
	}
	s.drainErr = s.drain(ctx)
	close(s.drained)
	return s.drainErr
}

func (s *Server) drain(ctx context.Context) error {
	start := time.Now()
	s.mu.Lock()
	s.handCtx = ctx // before isDraining: handingOver's readers see it
	s.isDraining.Store(true)
	close(s.draining)
	n := len(s.listeners)
	for l := range s.listeners {
		// Our descriptor only, never shutdown(2): the socket and its
		// accept queue live on in the successor. The error is ignored
		// because Serve closes l again on its way out.
		(*l).Close()
	}
	s.mu.Unlock()
	s.log.Info("httpdrain: draining", "listeners", n, "pace", s.pace)
	if s.pace == 0 {
		s.endAllNow()
	}

	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	shut := false
	for {
		t := s.sweep(time.Now())
		if !shut && t.serving == 0 && t.http1 == 0 && (s.pace == 0 || s.unasked() == 0) {
			// No HTTP/1 connection is left and none can appear, so
			// Shutdown cannot drop a request. It sends GOAWAY to the
			// HTTP/2 connections and waits for them. With a pace, not
			// before every response has had its turn: Shutdown holds
			// this loop, and so the turns, until HTTP/2 streams end.
			if t.h2 > 0 {
				s.log.Info("httpdrain: shutting down HTTP/2 connections", "conns", t.h2)
			}
			if err := s.srv.Shutdown(ctx); err != nil {
				if ctx.Err() != nil {
					return s.deadline(ctx)
				}
				s.log.Warn("httpdrain: shutdown", "err", err)
			}
			shut = true
			continue
		}
		if shut && s.done() {
			s.logPaced()
			s.log.Info("httpdrain: drained", "took", time.Since(start), "handed", s.handed.Load())
			return nil
		}
		select {
		case <-tick.C:
		case <-s.gone:
		case <-ctx.Done():
			return s.deadline(ctx)
		}
	}
}

// done reports whether no handler runs and no hijacked connection is left,
// and if so marks the drain finished. Handlers are counted first: a handler
// calls Hijacked before it returns, so once none runs, every hijacked
// connection is in the table.
func (s *Server) done() bool {
	if s.running.Load() != 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.hijacked) != 0 {
		return false
	}
	s.finished = true
	return true
}

// deadline closes everything that is left.
func (s *Server) deadline(ctx context.Context) error {
	s.mu.Lock()
	s.finished = true
	active := len(s.conns)
	hj := make([]net.Conn, 0, len(s.hijacked))
	for h := range s.hijacked {
		hj = append(hj, h.c)
	}
	s.mu.Unlock()
	// Close, unlike Shutdown, does not wait; it closes the listeners too,
	// which are closed already.
	s.srv.Close()
	s.wrapUpAll()
	for _, c := range hj {
		c.Close()
	}
	err := &DeadlineError{Active: active, Hijacked: len(hj), Running: int(s.running.Load()), Err: ctx.Err()}
	s.logPaced()
	s.log.Warn("httpdrain: deadline", "active", err.Active, "hijacked", err.Hijacked, "running", err.Running)
	return err
}
