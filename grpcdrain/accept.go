package grpcdrain

import (
	"context"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"
)

// AcceptSettle bounds the wait, as a drain begins, for connections accepted
// just before it to be taken in by grpc-go. grpc.Server closes, without a
// byte, a connection whose serving goroutine starts after GracefulStop
// began (grpc.Server.handleRawConn): its client sees "error reading server
// preface" and fails the calls it queued for it. That goroutine starts
// within microseconds of the accept, and the client's preface comes
// within a round trip: a second covers both on a loaded machine. A client
// still silent after it (a TCP probe) is closed: grpc-go's GracefulStop
// and Stop would both wait for its handshake to time out.
const AcceptSettle = time.Second

// listener records each connection it accepts as pending until grpc-go has
// taken it in (connTracker sees it), so that a drain can wait for them
// before GracefulStop.
type listener struct {
	net.Listener
	s      *Server
	once   sync.Once
	err    error
	served chan struct{} // closed when grpc.Server.Serve on it returned
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.accepted(c)
	}
	return c, err
}

// Close closes once: the drain closes it first, grpc.Server again.
func (l *listener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

// Serve accepts connections on lis, as grpc.Server.Serve does, and returns
// nil once the drain closed lis.
func (s *Server) Serve(lis net.Listener) error {
	l := &listener{Listener: lis, s: s, served: make(chan struct{})}
	defer close(l.served)
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		lis.Close()
		return grpc.ErrServerStopped
	}
	s.listeners = append(s.listeners, l)
	s.mu.Unlock()
	err := s.Server.Serve(l)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return nil
	}
	return err
}

// pendingConn is a connection accepted and not yet taken in by grpc-go.
type pendingConn struct {
	c  net.Conn
	at time.Time
}

// accepted notes a new connection as pending. Connections that never
// reach grpc-go's transport (the client left or was silent during the
// handshake) stay in the map until the map grows past pendingSweep: then
// those older than the handshake timeout, which grpc-go has closed, go.
func (s *Server) accepted(c net.Conn) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) >= pendingSweep {
		for k, p := range s.pending {
			if now.Sub(p.at) > s.handshake {
				delete(s.pending, k)
			}
		}
	}
	s.pending[c.RemoteAddr().String()] = pendingConn{c: c, at: now}
}

// pendingSweep is the size of the pending map past which accepted sweeps
// it: far more than the connections in their handshake at once on a
// server whose clients keep their connections, few enough that a sweep
// costs nothing.
const pendingSweep = 256

// taken notes that grpc-go serves the connection from addr.
func (s *Server) taken(addr net.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.pending, addr.String())
	if s.settled != nil && len(s.pending) == 0 {
		close(s.settled)
		s.settled = nil
	}
}

// stopAccepting closes every listener, waits for Serve on each to return
// (every connection it accepted is then recorded), then for those accepted
// within AcceptSettle to be taken in by grpc-go, or ctx.
func (s *Server) stopAccepting(ctx context.Context) {
	s.mu.Lock()
	s.closing = true
	ls := s.listeners
	s.mu.Unlock()
	for _, l := range ls {
		l.Close()
	}
wait:
	for _, l := range ls {
		select {
		case <-l.served:
		case <-ctx.Done():
			// Past the deadline: on to closing what is pending.
			break wait
		}
	}

	s.mu.Lock()
	var last time.Time
	for k, p := range s.pending {
		if time.Since(p.at) > s.handshake {
			delete(s.pending, k) // grpc-go has closed it
		} else if p.at.After(last) {
			last = p.at
		}
	}
	if len(s.pending) > 0 {
		settled := make(chan struct{})
		s.settled = settled
		s.mu.Unlock()
		t := time.NewTimer(time.Until(last.Add(AcceptSettle)))
		select {
		case <-settled:
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		s.mu.Lock()
	}
	// What is left has been silent for AcceptSettle, or its handshake
	// failed and grpc-go closed it (closing it again is harmless).
	// GracefulStop, and Stop too, wait for every handshake in progress,
	// up to the handshake timeout: close them, or a silent client
	// would hold the drain past its deadline.
	for k, p := range s.pending {
		p.c.Close()
		delete(s.pending, k)
	}
	s.settled = nil
	s.mu.Unlock()
}

// connTracker is the stats.Handler through which grpc-go tells that it
// serves a connection: TagConn comes once the connection is in its
// transport, so GracefulStop will drain it rather than close it.
type connTracker struct{ s *Server }

func (t connTracker) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	t.s.taken(info.RemoteAddr)
	return ctx
}

func (connTracker) HandleConn(context.Context, stats.ConnStats)                     {}
func (connTracker) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (connTracker) HandleRPC(context.Context, stats.RPCStats)                       {}
