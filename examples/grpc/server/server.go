package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/grpcdrain"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Config is what the flags set. Its zero value is not the flags'
// defaults: Main fills those in.
type Config struct {
	Listen  string        // -listen: TCP address to serve on
	PIDFile string        // -pid-file: baton.Options.PIDFile
	Drain   time.Duration // -drain: a retiring generation's deadline

	// plainDrain drains as a grpc-go user would without grpcdrain:
	// GracefulStop, and Stop at the deadline. Only the tests set it, to
	// measure what grpcdrain changes.
	plainDrain bool
}

// Main parses args (without the program name) and runs one generation of
// the server, logging to stderr. It returns the process's exit status: 0
// after a drain, 1 if the generation could not start, 2 on a usage error.
func Main(name string, args []string, stderr io.Writer) int {
	cfg, status := parseFlags(name, args, stderr)
	if status >= 0 {
		return status
	}
	return run(cfg, stderr)
}

func run(cfg Config, stderr io.Writer) int {
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
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:50051", "TCP `address` to serve gRPC on")
	fs.StringVar(&cfg.PIDFile, "pid-file", "", "write the serving generation's pid to `path`")
	fs.DurationVar(&cfg.Drain, "drain", 30*time.Second, "how long a retiring generation lets its calls run before asking its streams to end")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [-listen ADDR] [-pid-file PATH] [-drain DURATION]\n\n", name)
		fmt.Fprintf(stderr, "A gRPC echo server (%s: unary Echo, server-streaming Count, and\ngrpc.health.v1) whose calls survive upgrades. SIGHUP upgrades it (new\nbinary, same socket), SIGTERM or SIGINT drains and stops it.\n\nOptions:\n", ServiceName)
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
	if cfg.Drain <= 0 {
		fmt.Fprintf(stderr, "%s: -drain %v: want a positive duration\n", name, cfg.Drain)
		fs.Usage()
		return cfg, 2
	}
	return cfg, -1
}

// Run is one generation's life: take over (or start), listen, serve, say
// ready, wait until a successor serves or we are told to stop, drain and
// exit.
func Run(cfg Config, log *slog.Logger) error {
	upg, err := baton.New(baton.Options{PIDFile: cfg.PIDFile, Logger: log})
	if err != nil {
		return fmt.Errorf("cannot take over: %w", err)
	}
	// After the drain: with no successor, the final stop removes the PID
	// file.
	defer upg.Stop()
	log = log.With("gen", upg.Generation())

	// The very socket the predecessor served: its accept queue is never
	// dropped.
	ln, err := upg.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen: %w", err)
	}

	var srv drainer
	if cfg.plainDrain {
		srv = newPlain()
	} else {
		// Hurry: a newer generation found too many draining, or an
		// operator sent baton.HurrySignal: wrap up now.
		srv = grpcdrain.NewServer(grpcdrain.Options{Hurry: upg.Hurry(), Logger: log})
	}
	srv.RegisterService(&echoDesc, nil)
	srv.Health().SetServingStatus(ServiceName, healthpb.HealthCheckResponse_SERVING)
	// Signals before serving: a SIGHUP or a supervisor's SIGTERM that
	// found no handler would kill us with the calls we had accepted.
	upg.HandleSignals()
	// Serve before Ready: once we are ready the predecessor stops
	// accepting, and we must already be.
	go srv.Serve(ln)

	if err := upg.Ready(); err != nil {
		return fmt.Errorf("cannot become ready: %w", err)
	}
	log.Info("serving", "addr", ln.Addr().String())

	// A successor is ready (SIGHUP), or we were told to stop (SIGTERM).
	<-upg.Exit()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Drain)
	defer cancel()
	start := time.Now()
	err = srv.Drain(ctx)
	took := time.Since(start).Round(time.Millisecond)
	var de *grpcdrain.DeadlineError
	switch {
	case err == nil:
		log.Info("drained", "took", took, "wrapped", 0, "cut", 0)
	case errors.As(err, &de):
		// Streams longer than the deadline end here, with a status
		// their clients resume from: news only if some were cut.
		log.Info("drained", "took", took, "wrapped", de.WrappedUp, "cut", de.Cut, "cause", de.Err)
	default:
		log.Info("drained", "took", took, "cause", err)
	}
	return nil
}

// drainer is what Run needs of a server: grpcdrain.Server, or plain for
// the comparison.
type drainer interface {
	grpc.ServiceRegistrar
	Serve(net.Listener) error
	Health() *health.Server
	Drain(context.Context) error
}

// plain drains as grpc-go's documentation and issues advise without
// grpcdrain: health NOT_SERVING, GracefulStop, and Stop when the deadline
// comes first, cutting the streams still open.
type plain struct {
	*grpc.Server
	health *health.Server
}

func newPlain() *plain {
	p := &plain{Server: grpc.NewServer(), health: health.NewServer()}
	healthpb.RegisterHealthServer(p.Server, p.health)
	return p
}

func (p *plain) Health() *health.Server { return p.health }

// errCut is plain's Drain result when it had to Stop.
var errCut = errors.New("deadline: streams cut by Stop")

func (p *plain) Drain(ctx context.Context) error {
	p.health.Shutdown()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		p.GracefulStop()
	}()
	select {
	case <-stopped:
		return nil
	case <-ctx.Done():
		p.Stop()
		<-stopped
		return errCut
	}
}
