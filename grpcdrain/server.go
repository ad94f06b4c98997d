package grpcdrain

import (
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// DefaultGrace is how long handlers told to wrap up at the deadline have to
// return before Stop cuts them: all they have left to do is send a status,
// which takes microseconds; a second covers a loaded machine without
// letting a deaf handler hold the generation much past its deadline.
const DefaultGrace = time.Second

// DefaultHandshakeTimeout is Options.HandshakeTimeout's default. grpc-go's
// own is 120 s; a drain closes the connections still in their handshake
// anyway, so the bound matters only for the memory of connections that
// never finished it, and a client on any network sends its preface
// within a few seconds.
const DefaultHandshakeTimeout = 10 * time.Second

// Options configures a Server. The zero value works.
type Options struct {
	// Health is the health service whose statuses turn NOT_SERVING as the
	// drain begins. The application sets its services' statuses on it.
	// Defaults to a new health.Server, registered with the grpc.Server
	// under grpc.health.v1.Health (reporting SERVING for "").
	Health *health.Server

	// Grace bounds the wait, after the deadline, for the handlers told to
	// wrap up. Defaults to DefaultGrace.
	Grace time.Duration

	// HandshakeTimeout bounds a new connection's handshake (the client's
	// HTTP/2 preface, TLS if any): grpc.ConnectionTimeout, which NewServer
	// sets (do not pass it in opt). Defaults to DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration

	// Hurry, when closed, ends the drain as its deadline would, at once:
	// pass baton.Upgrader.Hurry(), closed when too many generations drain
	// or an operator sent baton.HurrySignal. nil: never.
	Hurry <-chan struct{}

	// Logger receives a line when the drain reaches its deadline (as
	// long streams do at every drain: Info). nil: silent.
	Logger *slog.Logger
}

// Server is a grpc.Server that can drain. Register services on it as on a
// grpc.Server (its methods are promoted); Serve through it, so that the
// drain knows the connections it accepted; call Drain, not GracefulStop,
// when the generation retires.
type Server struct {
	*grpc.Server
	health    *health.Server
	grace     time.Duration
	handshake time.Duration
	hurry     <-chan struct{}
	log       *slog.Logger

	mu        sync.Mutex
	calls     map[*call]struct{}     // running handlers
	wrapping  bool                   // the deadline has passed: new calls wrap up at once
	listeners []*listener            // passed to Serve
	closing   bool                   // the drain closed them
	pending   map[string]pendingConn // accepted connections (by remote address) grpc-go has not taken in yet
	settled   chan struct{}          // closed when pending empties, while a drain waits for it

	once sync.Once
	err  error // Drain's result
}

// NewServer makes a grpc.Server with opt and the interceptors that register
// each call, and registers the health service unless o.Health is given.
// The interceptors come first in the chain, so they see every call; an
// interceptor set with grpc.UnaryInterceptor or grpc.StreamInterceptor
// still runs before them (grpc-go puts it outermost).
func NewServer(o Options, opt ...grpc.ServerOption) *Server {
	s := &Server{
		health:    o.Health,
		grace:     o.Grace,
		handshake: o.HandshakeTimeout,
		hurry:     o.Hurry,
		log:       o.Logger,
		calls:     make(map[*call]struct{}),
		pending:   make(map[string]pendingConn),
	}
	if s.grace <= 0 {
		s.grace = DefaultGrace
	}
	if s.handshake <= 0 {
		s.handshake = DefaultHandshakeTimeout
	}
	opts := append([]grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.unary),
		grpc.ChainStreamInterceptor(s.stream),
		grpc.StatsHandler(connTracker{s}),
		grpc.ConnectionTimeout(s.handshake),
	}, opt...)
	s.Server = grpc.NewServer(opts...)
	if s.health == nil {
		s.health = health.NewServer()
		healthpb.RegisterHealthServer(s.Server, s.health)
	}
	return s
}

// Health returns the health service the drain turns NOT_SERVING.
func (s *Server) Health() *health.Server { return s.health }
