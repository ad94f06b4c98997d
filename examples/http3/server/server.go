package server

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/quicroute"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Config is what the flags set. Its zero value is not the flags'
// defaults: Main fills those in.
type Config struct {
	Listen  string        // -listen: UDP address to serve on
	PIDFile string        // -pid-file: baton.Options.PIDFile
	Drain   time.Duration // -drain: a retiring generation's deadline
	TLSCert string        // -tls-cert: PEM certificate chain; empty: self-signed
	TLSKey  string        // -tls-key: PEM private key of TLSCert
	Route   bool          // -route: quicroute's routing (false: today's quic-go behaviour)
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
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8443", "UDP `address` to serve HTTP/3 on")
	fs.StringVar(&cfg.PIDFile, "pid-file", "", "write the serving generation's pid to `path`")
	fs.DurationVar(&cfg.Drain, "drain", 30*time.Second, "how long a retiring generation lets its requests run before it closes its connections")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "PEM certificate chain `file` (default: a self-signed certificate for localhost and 127.0.0.1, new in every generation)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "PEM private key `file` of -tls-cert")
	fs.BoolVar(&cfg.Route, "route", true, "route each QUIC packet to the generation that owns its connection (false: every generation reads the socket, as quic-go servers do today)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [-listen ADDR] [-pid-file PATH] [-drain DURATION] [-tls-cert FILE -tls-key FILE] [-route=false]\n\n", name)
		fmt.Fprintf(stderr, "An HTTP/3 server (QUIC, UDP only) whose connections survive upgrades:\nGET / answers pid=<serving pid>, ?delay=DURATION first sleeps that long.\nSIGHUP upgrades it (new binary, same socket), SIGTERM or SIGINT drains\nand stops it.\n\nOptions:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, 0
		}
		return cfg, 2
	}
	usage := func(format string, a ...any) (Config, int) {
		fmt.Fprintf(stderr, "%s: %s\n", name, fmt.Sprintf(format, a...))
		fs.Usage()
		return cfg, 2
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case cfg.Drain <= 0:
		return usage("-drain %v: want a positive duration", cfg.Drain)
	case (cfg.TLSCert == "") != (cfg.TLSKey == ""):
		return usage("-tls-cert and -tls-key go together")
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
	// Signals first: from NewRouter on this process takes datagrams off
	// the shared socket, and a SIGHUP or a supervisor's SIGTERM that
	// found no handler would kill it with the connections it had begun.
	upg.HandleSignals()

	tlsConf, err := loadTLS(cfg)
	if err != nil {
		return err
	}
	// Tickets from any generation resume (and 0-RTT) in every other.
	if err := upg.TLSSessionTickets(tlsConf, baton.TicketOptions{}); err != nil {
		return err
	}
	// The very socket the predecessor served.
	pc, err := upg.ListenPacket("udp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen: %w", err)
	}

	conns := quicroute.NewConns()
	tr := &quic.Transport{Conn: pc, ConnContext: conns.TransportConnContext}
	var router *quicroute.Router
	if cfg.Route {
		// Tokens and stateless resets good in every generation.
		keys, err := quicroute.Keys(upg)
		if err != nil {
			pc.Close()
			return err
		}
		router, err = quicroute.NewRouter(upg, pc, quicroute.Options{Logger: log})
		if err != nil {
			pc.Close()
			return err
		}
		tr.Conn, tr.ConnectionIDGenerator = router, router.CIDGenerator()
		tr.StatelessResetKey, tr.TokenGeneratorKey = &keys.StatelessReset, &keys.Token
	}
	// Without routing, quic-go's defaults, as a server is written today:
	// no stateless resets (with one key shared, each generation would
	// reset the connections of the other, whose datagrams it reads), a
	// token key of its own.

	// http3 clones the config it is given, which would freeze the
	// session ticket keys TLSSessionTickets rotates: hand it tlsConf
	// itself for every handshake instead.
	serving := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return tlsConf, nil }}
	ln, err := tr.ListenEarly(http3.ConfigureTLSConfig(serving), &quic.Config{Allow0RTT: true})
	if err != nil {
		tr.Close()
		closePacket(router, pc)
		return fmt.Errorf("cannot listen: %w", err)
	}
	srv := &http3.Server{Handler: handler(), ConnContext: conns.HTTP3ConnContext}
	served := make(chan error, 1)
	// Serve before Ready: once we are ready the predecessor stops
	// reading the socket, and we must already be.
	go func() { served <- srv.ServeListener(ln) }()

	if err := upg.Ready(); err != nil {
		srv.Close()
		ln.Close()
		tr.Close()
		closePacket(router, pc)
		return fmt.Errorf("cannot become ready: %w", err)
	}
	log.Info("serving", "addr", pc.LocalAddr().String(), "route", cfg.Route)

	// A successor is ready (SIGHUP), or we were told to stop (SIGTERM).
	<-upg.Exit()

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Drain)
	defer cancel()
	// Hurry: a newer generation found too many draining, or an operator
	// sent baton.HurrySignal: the deadline is now.
	go func() {
		select {
		case <-upg.Hurry():
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	var res quicroute.DrainResult
	if cfg.Route {
		res, err = conns.Drain(ctx, srv, ln)
	} else {
		// What quic-go's documentation offers: GOAWAY, wait for the
		// connections, close them at the deadline.
		res.Conns, _ = conns.Live()
		err = srv.Shutdown(ctx)
		ln.Close()
	}
	<-served
	// The connections are closed; Close drops what is left of them (a
	// closing connection's retransmitted CONNECTION_CLOSE).
	tr.Close()
	closePacket(router, pc)
	args := []any{"took", time.Since(start).Round(time.Millisecond), "conns", res.Conns, "at_deadline", res.AtDeadline, "refused", res.Refused, "handshakes", conns.Total()}
	if router != nil {
		st := router.Stats()
		args = append(args, "own", st.Own, "relayed", st.Relayed, "received", st.Received, "relay_dropped", st.RelayDropped, "queue_dropped", st.QueueDropped)
		// baton's side: what the links carried, passed on and dropped.
		rs := upg.RelayStats()
		args = append(args, "link_sent", rs.Sent, "link_passed_on", rs.PassedOn, "link_received", rs.Received,
			"link_dropped_gone", rs.DroppedGone, "link_dropped_full", rs.DroppedFull, "link_dropped_unclaimed", rs.DroppedUnclaimed)
	}
	if err != nil {
		args = append(args, "cause", err)
	}
	log.Info("drained", args...)
	return nil
}

// closePacket closes the router, which closes the socket, or the socket.
func closePacket(router *quicroute.Router, pc interface{ Close() error }) {
	if router != nil {
		router.Close()
		return
	}
	pc.Close()
}

// handler serves GET /: "pid=<pid>\n", after ?delay=DURATION.
func handler() http.Handler {
	pid := os.Getpid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		if v := r.URL.Query().Get("delay"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				http.Error(w, fmt.Sprintf("bad delay %q", v), http.StatusBadRequest)
				return
			}
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "pid=%d\n", pid)
	})
}
