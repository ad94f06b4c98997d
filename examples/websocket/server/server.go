package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/httpdrain"
	"github.com/gobwas/ws"
)

// HandOverName is the name WebSocket connections travel under on the
// generation link.
const HandOverName = "ws"

// HandOverTimeout bounds the wait for the successor to acknowledge one
// connection. It is well under the default drain deadline, so that a
// connection the successor did not take still gets its close frame before
// Drain would cut it.
const HandOverTimeout = 5 * time.Second

// Config is what the flags set. Its zero value is not the flags'
// defaults: Main fills those in.
type Config struct {
	Listen  string        // -listen: TCP address to serve on
	PIDFile string        // -pid-file: baton.Options.PIDFile
	Drain   time.Duration // -drain: a retiring generation's deadline
}

// Main parses args (without the program name) and runs one generation of
// the server, logging to stderr. It returns the process's exit status: 0
// after a drain, 1 if the generation could not start, 2 on a usage error.
func Main(name string, args []string, stderr io.Writer) int {
	cfg, status := parseFlags(name, args, stderr)
	if status >= 0 {
		return status
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("pid", os.Getpid())
	if err := Run(cfg, log); err != nil {
		log.Error("exiting", "err", err)
		return 1
	}
	return 0
}

// parseFlags returns the configuration, or an exit status (0 for -h, 2 for
// a usage error) if Main must return at once; -1 means go on.
func parseFlags(name string, args []string, stderr io.Writer) (Config, int) {
	var cfg Config
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "TCP `address` to serve on")
	fs.StringVar(&cfg.PIDFile, "pid-file", "", "write the serving generation's pid to `path`")
	fs.DurationVar(&cfg.Drain, "drain", 30*time.Second, "how long a retiring generation may take to hand over or close its connections")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [-listen ADDR] [-pid-file PATH] [-drain DURATION]\n\n", name)
		fmt.Fprintf(stderr, "A WebSocket echo server that keeps its connections across upgrades:\nGET /echo upgrades to a WebSocket that answers each message M with\n\"M pid=PID\". SIGHUP upgrades it (new binary, same sockets, same\nWebSocket connections), SIGTERM or SIGINT closes them and stops.\n\nOptions:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, 0
		}
		return cfg, 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		fs.Usage()
		return cfg, 2
	}
	return cfg, -1
}

// Run is one generation's life: take over (or start), listen, accept the
// predecessor's WebSockets, serve, say ready, wait until a successor
// serves or we are told to stop, then hand every WebSocket over (or close
// it), drain and exit.
func Run(cfg Config, log *slog.Logger) error {
	upg, err := baton.New(baton.Options{PIDFile: cfg.PIDFile, Logger: log})
	if err != nil {
		return fmt.Errorf("cannot take over: %w", err)
	}
	defer upg.Stop()
	log = log.With("gen", upg.Generation())

	ln, err := upg.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen: %w", err)
	}
	// Before Ready: the predecessor hands its connections over as soon
	// as we are ready, and we refuse any under a name not yet asked for.
	handed, err := upg.Handed(HandOverName)
	if err != nil {
		return fmt.Errorf("cannot take connections over: %w", err)
	}

	e := &echo{upg: upg, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /echo", e.upgrade)
	e.srv = httpdrain.New(&http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}, httpdrain.Options{Logger: log})
	// Signals before serving: a SIGHUP or a supervisor's SIGTERM that
	// found no handler would kill us with the connections we had
	// accepted.
	upg.HandleSignals()
	go e.srv.Serve(ln)
	resumed := make(chan struct{})
	go func() {
		defer close(resumed)
		e.resume(handed)
	}()

	if err := upg.Ready(); err != nil {
		handed.Close()
		return fmt.Errorf("cannot become ready: %w", err)
	}
	log.Info("serving", "addr", ln.Addr().String())

	<-upg.Exit()

	// Every session watches Exit too: each stops at its next message
	// boundary and hands its connection over, or closes it. Drain waits
	// for them, as they are all registered with Hijacked.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Drain)
	defer cancel()
	start := time.Now()
	if err := e.srv.Drain(ctx); err != nil {
		log.Warn("drained at the deadline", "err", err)
	} else {
		log.Info("drained", "took", time.Since(start).Round(time.Millisecond),
			"handed", e.handed.Load(), "closed", e.closed.Load(), "refused", e.refused.Load())
	}
	// Only now: a connection our predecessor hands over late still
	// reaches a session, which passes it straight on.
	handed.Close()
	<-resumed
	return nil
}

// echo serves the WebSockets of one generation.
type echo struct {
	upg *baton.Upgrader
	srv *httpdrain.Server
	log *slog.Logger

	// Counts for the drain's log line: connections handed over, closed
	// with a close frame, and refusals that were offered again.
	handed, closed, refused atomic.Int64
}

// upgrade answers GET /echo: the WebSocket handshake, then the session.
// permessage-deflate is never negotiated, so a connection's only protocol
// state is its position in the stream, and that lives in the socket.
func (e *echo) upgrade(w http.ResponseWriter, r *http.Request) {
	c, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		if c != nil {
			c.Close()
		}
		return
	}
	done := e.srv.Hijacked(c)
	defer done()
	// Whatever net/http read past the request belongs to the first
	// frames: the session reads it before the socket, and hands it on if
	// it never gets that far.
	var st connState
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		st.Pending = append([]byte(nil), b...)
	}
	e.run(c, st)
}

// resume serves the connections the predecessor hands over, until the
// listener is closed.
func (e *echo) resume(handed net.Listener) {
	for {
		c, err := handed.Accept()
		if err != nil {
			return
		}
		// Registered before the session starts, so that Drain, which may
		// already be waiting, counts it.
		done := e.srv.Hijacked(c)
		go func() {
			defer done()
			hc, ok := c.(*baton.HandedConn)
			if !ok {
				c.Close()
				return
			}
			st, err := decodeState(hc.State)
			if err != nil {
				// The connection is ours now, and the predecessor
				// finished its last answer: a close frame is safe.
				e.log.Warn("cannot resume a WebSocket", "err", err)
				s := newSession(hc.Conn, connState{})
				s.goAway(ws.StatusInternalServerError, "cannot resume")
				return
			}
			e.run(hc.Conn, st)
		}()
	}
}

// run serves c until the client leaves or this generation does; then it
// hands c to the successor, or closes it with a close frame.
func (e *echo) run(c net.Conn, st connState) {
	s := newSession(c, st)
	finished := make(chan struct{})
	defer close(finished)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-e.upg.Exit():
			s.r.Stop()
		case <-finished:
		}
	}()

	if err := s.serve(); !errors.Is(err, errStop) {
		// The closing handshake is done (a *closedError), or the client
		// went away or broke the connection: nothing to hand over.
		c.Close()
		return
	}

	// serve saw the stop flag, perhaps before Stop set its deadline in
	// the past: wait for that, so it cannot cut short goAway's own.
	<-stopped
	if err := e.handOver(s); err != nil {
		e.closed.Add(1)
		if !errors.Is(err, baton.ErrNoSuccessor) {
			// Stopping is the expected case; anything else is news.
			e.log.Warn("cannot hand a WebSocket over; closing it", "err", err)
		}
		s.goAway(ws.StatusGoingAway, "server stopping")
		return
	}
	// The socket lives on in the successor. HandOver closed our
	// descriptor; nothing here may touch c again — above all, no close
	// frame, which would land in the middle of the successor's stream.
	e.handed.Add(1)
}

// handOver passes s's connection, at a message boundary, to the
// successor. nil means the successor owns it; any error, that it is
// still ours.
func (e *echo) handOver(s *session) error {
	sc, ok := s.c.(syscall.Conn)
	if !ok {
		return fmt.Errorf("a %T cannot be handed over", s.c)
	}
	blob, err := s.state().encode()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), HandOverTimeout)
	defer cancel()
	// A refusal is most often a successor that has not yet accepted the
	// connections before this one (it queues a bounded number): the
	// connection is still ours, so wait a little and offer it again.
	// A permanent refusal costs HandOverTimeout before the close frame.
	backoff := retryMin
	for {
		err := e.upg.HandOver(ctx, HandOverName, sc, blob)
		if err == nil || !errors.Is(err, baton.ErrHandOverRefused) {
			return err
		}
		e.refused.Add(1)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return err
		}
		backoff = min(2*backoff, retryMax)
	}
}

// A refused handover is offered again after retryMin, doubling up to
// retryMax: a successor accepts a queue's worth of connections in
// microseconds when it runs, and in a few scheduling rounds on a
// loaded machine.
const (
	retryMin = 2 * time.Millisecond
	retryMax = 100 * time.Millisecond
)
