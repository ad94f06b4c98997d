package server

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/httpdrain"
)

// MaxDelay bounds ?delay=, so that one request cannot keep a retiring
// generation alive for longer than a demo needs.
const MaxDelay = time.Minute

// Config is what the flags set. Its zero value is not the flags'
// defaults: Main fills those in.
type Config struct {
	Listen         string        // -listen: TCP address to serve on
	PIDFile        string        // -pid-file: baton.Options.PIDFile
	Drain          time.Duration // -drain: a retiring generation's deadline
	UpgradeTimeout time.Duration // -upgrade-timeout: baton.Options.UpgradeTimeout
	Control        string        // -control: baton.Options.Control
	FDStore        bool          // -fd-store: baton.Options.FDStore
	IdleGrace      time.Duration // -idle-grace: httpdrain.Options.IdleGrace
	TLSCert        string        // -tls-cert: PEM certificate chain; serve HTTPS
	TLSKey         string        // -tls-key: PEM private key of TLSCert
	Probation      time.Duration // -probation: baton.Options.Probation
	MaxDraining    int           // -max-draining: baton.Options.MaxDraining
	ClosePace      time.Duration // -close-pace: httpdrain.Options.ClosePace
}

// Main parses args (without the program name) and runs one generation of
// the server, logging to stderr. It returns the process's exit status: 0
// after a drain, 1 if the generation could not start, 2 on a usage error.
//
// Every generation runs Main with the same arguments: a successor is the
// same command line started again, so a flag's value can only change
// between generations if it is read from a file the operator edits (not
// shown here).
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
	fs.StringVar(&cfg.Listen, "listen", "127.0.0.1:8080", "TCP `address` to serve HTTP on")
	fs.StringVar(&cfg.PIDFile, "pid-file", "", "write the serving generation's pid to `path`")
	fs.DurationVar(&cfg.Drain, "drain", 30*time.Second, "how long a retiring generation may drain")
	fs.DurationVar(&cfg.UpgradeTimeout, "upgrade-timeout", baton.DefaultUpgradeTimeout, "how long a successor may take to be ready")
	fs.StringVar(&cfg.Control, "control", "", "restart under daemontools, runit or s6 through the control socket at `path`")
	fs.BoolVar(&cfg.FDStore, "fd-store", false, "keep the listener in systemd's file descriptor store")
	fs.DurationVar(&cfg.IdleGrace, "idle-grace", httpdrain.DefaultIdleGrace, "while draining, close a keep-alive connection only after its client has been silent this long (raise it above the longest pause of your clients)")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "serve HTTPS with the PEM certificate (chain) in `file`, resuming TLS sessions across upgrades; needs -tls-key")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "the PEM private key of -tls-cert, in `file`")
	fs.DurationVar(&cfg.Probation, "probation", 0, "after a successor is ready, keep serving beside it this long before draining; if it dies meanwhile, serve on (0: drain at once)")
	fs.IntVar(&cfg.MaxDraining, "max-draining", 0, "let at most `N` generations drain at once: beyond it the oldest is stopped at once, cutting its long connections (0: no bound)")
	fs.DurationVar(&cfg.ClosePace, "close-pace", 0, "while draining, end connections that cannot be handed over (streams, TLS, idle past -idle-grace) one at a time, this long apart (0: all at once)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [-listen ADDR] [-pid-file PATH] [-control PATH] [-fd-store] [-drain DURATION] [-probation DURATION] [-max-draining N] [-close-pace DURATION] [-tls-cert FILE -tls-key FILE]\n\n", name)
		fmt.Fprintf(stderr, "A zero-downtime HTTP server: SIGHUP upgrades it (new binary, same sockets),\nSIGTERM or SIGINT drains and stops it.\n\nOptions:\n")
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
	if cfg.Probation < 0 || cfg.Probation > baton.MaxProbation {
		fmt.Fprintf(stderr, "%s: -probation %v: want 0 (none) up to %v\n", name, cfg.Probation, baton.MaxProbation)
		fs.Usage()
		return cfg, 2
	}
	if cfg.MaxDraining < 0 || cfg.ClosePace < 0 {
		fmt.Fprintf(stderr, "%s: -max-draining and -close-pace cannot be negative\n", name)
		fs.Usage()
		return cfg, 2
	}
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		fmt.Fprintf(stderr, "%s: -tls-cert and -tls-key go together: give both (HTTPS) or neither (HTTP)\n", name)
		fs.Usage()
		return cfg, 2
	}
	return cfg, -1
}

// Run is one generation's life: take over (or start), listen, serve, say
// ready, wait until a successor serves or we are told to stop, drain, and
// — under a supervisor, after a SIGHUP — upgrade in place. It returns an
// error if this generation could not start serving (the previous one, if
// any, then serves on) or could not re-execute itself (the interim
// generation serves until the supervisor's next instance takes over).
func Run(cfg Config, log *slog.Logger) error {
	// 1. New first, before anything that takes time or touches the
	// outside world. In a successor it receives the predecessor's sockets
	// (and with -control, takes them over from the instance serving
	// there); in a first generation it adopts what systemd passed, if
	// anything. An error here means the handoff was malformed: exit, and
	// the predecessor, told why, keeps serving.
	upg, err := baton.New(baton.Options{
		PIDFile:        cfg.PIDFile,
		UpgradeTimeout: cfg.UpgradeTimeout,
		Control:        cfg.Control,
		FDStore:        cfg.FDStore,
		Probation:      cfg.Probation,
		MaxDraining:    cfg.MaxDraining,
		Logger:         log, // nil would be silent; an operator wants these lines
	})
	if err != nil {
		return fmt.Errorf("cannot take over: %w", err)
	}
	// Stop runs last, after the drain below. If no successor took over it
	// is the final stop of the service: it removes the PID file and the
	// files of Unix sockets, which must not vanish while requests are
	// still being answered.
	defer upg.Stop()
	log = log.With("gen", upg.Generation())

	// 2. Listen through the upgrader, never net.Listen: the first
	// generation gets a new socket, every later one the very same socket
	// its predecessor served (found by network and address), so the
	// kernel's accept queue is never dropped. Under socket activation it is
	// the socket systemd made for this address.
	ln, err := upg.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("cannot listen: %w", err)
	}

	// 2b. HTTPS, if asked for. Each generation reads the certificate
	// files afresh, so a renewed certificate goes live with the next
	// upgrade. TLSSessionTickets, before the first handshake: a client
	// resumes the session it had with the predecessor (an abbreviated
	// handshake: no certificate, no signature) because the session
	// ticket keys came over with the sockets; it rotates them from here
	// on. The socket stays plain TCP: TLS lives in this process only.
	if cfg.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return fmt.Errorf("cannot load the TLS certificate: %w", err)
		}
		tcfg := &tls.Config{
			Certificates: []tls.Certificate{cert},
			// "h2": httpdrain drains HTTP/2 connections with GOAWAY.
			NextProtos: []string{"h2", "http/1.1"},
		}
		if err := upg.TLSSessionTickets(tcfg, baton.TicketOptions{}); err != nil {
			return fmt.Errorf("cannot carry TLS sessions across upgrades: %w", err)
		}
		ln = tls.NewListener(ln, tcfg)
	}

	// 3. Ask for the connections the predecessor will hand over, before
	// Ready: it hands them over only once we are ready, and refuses a
	// name nobody asked for. Where the link is not supported there is
	// nothing to ask for, and connections are drained as before. (Only
	// plaintext HTTP/1 connections are handed over: with -tls-cert none
	// come, and TLS clients resume their sessions instead.)
	handed, err := upg.Handed(httpdrain.DefaultHandoffName)
	if err != nil && !errors.Is(err, baton.ErrNotSupported) {
		return fmt.Errorf("cannot receive connections: %w", err)
	}
	var handoff httpdrain.Handoff
	if handed != nil {
		handoff = upg
	}

	// 4. Signals before serving, and so before Ready, which publishes our
	// pid (PID file, MAINPID=): a SIGHUP, or a supervisor's SIGTERM,
	// that found no handler would kill the process, its default action,
	// with whatever connections it had accepted. HandleSignals upgrades
	// on SIGHUP (one that comes before Ready waits for it) and stops on
	// SIGTERM and SIGINT (under a supervisor, before Ready, a restart
	// that waits for it); a program with other needs calls Upgrade and
	// Stop itself.
	upg.HandleSignals()

	// 5. Serve before Ready. Until Ready the predecessor still accepts on
	// the shared socket too, so connections are served either way; after
	// Ready it stops, and we must already be accepting.
	srv := httpdrain.New(&http.Server{
		Handler: Handler(upg.Generation(), upg.Status),
		// A client that never finishes its headers must not hold a
		// connection, and so a retiring generation, until the drain
		// deadline. A handed connection starts afresh with it too.
		ReadHeaderTimeout: 10 * time.Second,
	}, httpdrain.Options{
		Logger:    log,
		IdleGrace: cfg.IdleGrace,
		// When we drain, idle keep-alive connections go to the
		// successor instead of being closed: their clients never see
		// the upgrade, and we exit as soon as the requests in flight
		// are answered instead of waiting IdleGrace for idle clients.
		Handoff: handoff,
		// What cannot be handed over (streams on /stream, TLS
		// connections) is ended one at a time, so that its clients
		// come back to the successor spread out, not in one storm.
		ClosePace: cfg.ClosePace,
	})
	go srv.Serve(ln)
	if handed != nil {
		// The same Server serves what the predecessor hands over, as if
		// it had accepted it: the same handler, timeouts and drain.
		go srv.Serve(handed)
	}

	// 6. Ready: the predecessor, if any, now stops accepting and drains;
	// the PID file names us; systemd, if it runs the service, learns that
	// we serve (READY=1, and MAINPID= after an upgrade). A successor that
	// never gets here is killed after UpgradeTimeout and the predecessor
	// serves on.
	if err := upg.Ready(); err != nil {
		return fmt.Errorf("cannot become ready: %w", err)
	}
	log.Info("serving", "addr", ln.Addr().String())

	// 7. Wait. Exit is closed when a successor is ready (after SIGHUP) or
	// when Stop was called (after SIGTERM): either way this generation's
	// work is done.
	<-upg.Exit()

	// 8. Drain: stop accepting (closing only this process's copy of the
	// socket; the successor keeps accepting on it), let in-flight requests
	// finish, hand idle keep-alive connections to the successor (or, with
	// no successor, close them without losing a request that is on its
	// way). At the deadline, whatever is left is closed:
	// the deadline bounds how long two generations run side by side.
	//
	// Hurry is closed when this generation must stop now: a newer one
	// found more than -max-draining generations draining, or an operator
	// sent baton.HurrySignal. Cancelling the drain's context ends it at once,
	// as its deadline would.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Drain)
	defer cancel()
	go func() {
		select {
		case <-upg.Hurry():
			cancel()
		case <-ctx.Done():
		}
	}()
	start := time.Now()
	if err := srv.Drain(ctx); err != nil {
		select {
		case <-upg.Hurry():
			log.Warn("stopped at once while draining", "err", err)
		default:
			log.Warn("drained at the deadline", "err", err)
		}
	} else {
		log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	}

	// 9. Under daemontools, runit or s6 with -control, a SIGHUP upgrades
	// in place: the sockets went to an interim generation, and this
	// process now re-executes the program, keeping the pid the supervisor
	// tracks; the new image takes the sockets back. Replacing the process
	// is this explicit step, never a side effect of Stop. Exec returns
	// only if it could not re-execute; the supervisor then starts the
	// next instance, which takes over from the interim generation.
	if upg.ExecRequested() {
		return fmt.Errorf("cannot upgrade in place: %w", upg.Exec())
	}
	return nil
}

// StreamInterval is how often GET /stream writes a line: often enough that
// a client sees it live, rarely enough that 200 streams cost nothing.
const StreamInterval = 100 * time.Millisecond

// Handler answers GET / with the pid and generation of the process that
// served the request, so a client can see the upgrade happen; ?delay=D
// sleeps D first (at most MaxDelay), to show that a slow request started
// before an upgrade still gets its full response. GET /stream is a
// long-lived response (see Stream). GET /status is status() as JSON —
// Upgrader.Status: this generation and the older ones still draining
// (pid, state, age, connections, memory) and the service's upgrade counts.
func Handler(gen int, status func() baton.Status) http.Handler {
	pid := os.Getpid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/stream":
			Stream(w, r)
			return
		case "/status":
			if status == nil {
				http.NotFound(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(status())
			return
		}
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		if v := r.URL.Query().Get("delay"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > MaxDelay {
				http.Error(w, fmt.Sprintf("bad delay %q: want a duration from 0 to %v", v, MaxDelay), http.StatusBadRequest)
				return
			}
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "pid=%d gen=%d\n", pid, gen)
	})
}

// Stream answers GET /stream with a line "tick pid=<pid> n=<n>" every
// StreamInterval until the drain asks it to end (httpdrain.WrapUp: at its
// turn with -close-pace, as the drain begins without), then writes
// "end pid=<pid> n=<n>" and returns: the client sees a complete chunked
// body, not a reset, and opens its next stream on the successor. A stream
// cannot be handed over — it is a response in flight — so it is what
// -close-pace paces and -max-draining may cut.
func Stream(w http.ResponseWriter, r *http.Request) {
	pid := os.Getpid()
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	tick := time.NewTicker(StreamInterval)
	defer tick.Stop()
	for n := 0; ; n++ {
		if _, err := fmt.Fprintf(w, "tick pid=%d n=%d\n", pid, n); err != nil {
			return // the client left
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-httpdrain.WrapUp(r.Context()):
			fmt.Fprintf(w, "end pid=%d n=%d\n", pid, n+1)
			return
		case <-r.Context().Done():
			return
		case <-tick.C:
		}
	}
}
