package grpcdrain

import (
	"context"

	"google.golang.org/grpc"
)

// call is one running handler, unary or streaming.
type call struct {
	wrap chan struct{} // closed when the handler must wrap up
}

type callKey struct{}

// WrapUp returns a channel that is closed when the Server draining the call
// whose context ctx is (or derives from) wants it to end: at the drain's
// deadline, or at once for a call that begins after it. A handler that
// streams watches it beside its work, and then returns End(ctx, resume)
// so that its client re-opens the call on the successor where it left
// off. For a context that does not come from a Server's handler it
// returns nil, which is never closed.
func WrapUp(ctx context.Context) <-chan struct{} {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		return c.wrap
	}
	return nil
}

// begin registers a handler as it starts.
func (s *Server) begin() *call {
	c := &call{wrap: make(chan struct{})}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[c] = struct{}{}
	if s.wrapping {
		close(c.wrap)
	}
	return c
}

// end unregisters a handler that returned.
func (s *Server) end(c *call) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.calls, c)
}

// wrapUpAll closes every running handler's WrapUp, and makes later calls
// wrap up at once. It returns how many were running.
func (s *Server) wrapUpAll() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.wrapping = true
	for c := range s.calls {
		close(c.wrap)
	}
	return len(s.calls)
}

// running is how many handlers have not returned.
func (s *Server) running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

func (s *Server) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	c := s.begin()
	defer s.end(c)
	return h(context.WithValue(ctx, callKey{}, c), req)
}

func (s *Server) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	c := s.begin()
	defer s.end(c)
	return h(srv, &stream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callKey{}, c)})
}

// stream gives a streaming handler a context that carries its call.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }
