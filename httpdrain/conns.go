package httpdrain

import (
	"crypto/tls"
	"net"
	"net/http"
	"time"
)

// connInfo is what the ConnState hook has learnt about one connection.
type connInfo struct {
	state   http.ConnState
	since   time.Time // of the last transition
	seq     uint64    // counts transitions: tells the sweep the conn moved on
	known   bool      // h2 has been looked up
	h2      bool      // HTTP/2 negotiated with ALPN: left to GOAWAY
	closing bool      // the sweep has closed it; StateClosed is on its way
	ended   bool      // the drain ended its response: closing it costs no turn
}

// track is chained into http.Server.ConnState.
func (s *Server) track(c net.Conn, st http.ConnState) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch st {
	case http.StateHijacked, http.StateClosed:
		delete(s.conns, c)
		if hc, ok := c.(*conn); ok {
			hc.observe(st)
		}
		if s.isDraining.Load() {
			// The last one may have left: Drain need not wait for its
			// next tick, which would add up to pollInterval to every
			// drain that ends with a handover.
			select {
			case s.gone <- struct{}{}:
			default:
			}
		}
		return
	}
	if hc, ok := c.(*conn); ok {
		hc.observe(st)
	}
	ci := s.conns[c]
	ci.state, ci.since, ci.seq = st, now, ci.seq+1
	if st != http.StateNew && !ci.known {
		// The first transition after StateNew comes after the TLS
		// handshake, and a server-side tls.Conn holds its handshake
		// mutex only during the handshake, so this does not block.
		ci.known = true
		if tc, ok := c.(*tls.Conn); ok {
			ci.h2 = tc.ConnectionState().NegotiatedProtocol == "h2"
		}
	}
	s.conns[c] = ci
}

// tally is a snapshot of what keeps a drain going.
type tally struct {
	serving int // Serve calls not yet returned
	http1   int // open connections the sweep looks after
	h2      int // open HTTP/2 connections
}

// candidate is a connection the sweep may close, as it was when seen.
type candidate struct {
	c  net.Conn
	ci connInfo
}

// sweep closes the HTTP/1 connections that have been idle (or new without a
// request) for at least the grace period and have nothing in their receive
// buffer, and counts what remains.
func (s *Server) sweep(now time.Time) tally {
	var t tally
	var cands []candidate
	handing := s.handingOver()
	s.mu.Lock()
	t.serving = s.serving
	for c, ci := range s.conns {
		if ci.h2 {
			t.h2++
			continue
		}
		t.http1++
		if hc, ok := c.(*conn); ok {
			if handing && hc.wake() {
				// No grace period: the connection leaves as soon as
				// its Read can be shown to hold nothing (conn.wake),
				// or when its request is done and net/http reads
				// again. One with part of a request buffered is left
				// to the rule below, as without a Handoff.
				continue
			}
			if !hc.blocked() {
				continue // busy with what it read; see conn.blocked
			}
		}
		if ci.closing || ci.state == http.StateActive || now.Sub(ci.since) < s.grace {
			continue
		}
		cands = append(cands, candidate{c, ci})
	}
	s.mu.Unlock()

	// Without a pace every idle connection goes now; with one, only
	// those whose response the drain already ended (that was their
	// turn), and one more if a turn is due.
	var paced []candidate
	for _, k := range cands {
		if s.pace > 0 && !k.ci.ended {
			paced = append(paced, k)
			continue
		}
		s.closeIdle(k, now)
	}
	s.takeTurn(now, paced)
	return t
}

// closeIdle closes k's connection if it is still as the sweep saw it and
// nothing waits in its receive buffer, and reports whether it did.
func (s *Server) closeIdle(k candidate, now time.Time) bool {
	if n, ok := pendingBytes(k.c); ok && n > 0 {
		// A request is arriving: the connection is about to turn
		// active and will get "Connection: close".
		return false
	}
	s.mu.Lock()
	ci, ok := s.conns[k.c]
	idle := ok && !ci.closing && ci.seq == k.ci.seq
	if idle {
		ci.closing = true
		s.conns[k.c] = ci
	}
	s.mu.Unlock()
	if !idle {
		return false // it moved on while we looked
	}
	// Close, not shutdown(2): the receive buffer is empty, so the
	// client gets FIN, not RST, and the server's goroutine sees its
	// read fail and cleans up (StateClosed).
	k.c.Close()
	s.log.Debug("httpdrain: closed idle connection", "remote", k.c.RemoteAddr(), "state", ci.state, "idle", now.Sub(ci.since))
	return true
}
