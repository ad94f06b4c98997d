package grpcdrain

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// ErrHurried is the cause of a DeadlineError when Options.Hurry ended the
// drain.
var ErrHurried = errors.New("grpcdrain: told to stop at once")

// DeadlineError is returned by Drain when its deadline came (or Hurry)
// before every call had finished. It unwraps to the cause: the context's
// error or ErrHurried.
type DeadlineError struct {
	WrappedUp int   // calls running at the deadline, told to wrap up
	Cut       int   // handlers still running after Options.Grace, cut by Stop
	Err       error // the cause
}

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("grpcdrain: deadline: %d calls told to wrap up, %d cut: %v", e.WrappedUp, e.Cut, e.Err)
}

func (e *DeadlineError) Unwrap() error { return e.Err }

// Drain retires the server: health NOT_SERVING, no more accepting (once
// the connections accepted last are taken in, within AcceptSettle),
// GOAWAY; calls in progress finish. It returns nil once they all have and
// the server has stopped. If ctx ends first, or Options.Hurry is closed, the
// calls still running are told to wrap up (WrapUp), Stop is called once
// they returned or after Options.Grace, and Drain returns a
// *DeadlineError. Calls after the first wait for it and return its result.
func (s *Server) Drain(ctx context.Context) error {
	s.once.Do(func() { s.err = s.drain(ctx) })
	return s.err
}

func (s *Server) drain(ctx context.Context) error {
	// Before GOAWAY, so that a health watcher hears NOT_SERVING while
	// its stream is still open.
	s.health.Shutdown()
	// Then stop accepting, and let grpc-go take in what we accepted last,
	// before GracefulStop would close it unanswered.
	s.stopAccepting(ctx)

	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		s.Server.GracefulStop()
	}()
	var cause error
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		cause = ctx.Err()
	case <-s.hurry:
		cause = ErrHurried
	}

	n := s.wrapUpAll()
	if s.log != nil {
		s.log.Info("grpc drain at its deadline: calls told to wrap up", "calls", n, "cause", cause)
	}
	// GracefulStop returns when every call has ended and every connection
	// has been closed after its last frame: so the statuses End wrote have
	// reached the clients. Stop, by contrast, closes connections at once,
	// with whatever is still queued for them.
	grace := time.NewTimer(s.grace)
	defer grace.Stop()
	select {
	case <-stopped:
		return &DeadlineError{WrappedUp: n, Err: cause}
	case <-grace.C:
	}
	cut := s.running()
	s.Server.Stop()
	<-stopped
	return &DeadlineError{WrappedUp: n, Cut: cut, Err: cause}
}
