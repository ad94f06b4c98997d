// Package demoserver is baton's demo HTTP server: examples/httpserver runs
// it, and so does "baton demo" (the baton binary serves as it, so "go run"
// needs no second build). Read it as the reference for using the library.
//
// Contract: -listen ADDR (default 127.0.0.1:8080), -pid-file PATH,
// -drain DURATION, -control PATH (supervisor restarts through that control
// socket), -fd-store (keep the listener in systemd's descriptor store);
// SIGHUP upgrades, SIGTERM and SIGINT drain and stop (under a supervisor
// with -control, SIGTERM restarts while the supervisor wants it up);
// GET / answers 200 with "pid=<serving pid> gen=<generation>";
// GET /?delay=2s sleeps that long first. Each upgrade is logged with slog.
package demoserver

import (
	"context"
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

// MaxDelay bounds ?delay=, so a request cannot hold a generation forever.
const MaxDelay = time.Minute

// Main runs the server with args (without the program name) and returns the
// process exit status: 0 after a clean drain, 1 on a runtime error, 2 on a
// usage error.
func Main(name string, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "TCP `address` to serve HTTP on")
	pidFile := fs.String("pid-file", "", "write the serving generation's pid to `path`")
	drain := fs.Duration("drain", 30*time.Second, "how long a retiring generation may drain")
	timeout := fs.Duration("upgrade-timeout", baton.DefaultUpgradeTimeout, "how long a successor may take to be ready")
	control := fs.String("control", "", "restart under daemontools, runit or s6 through the control socket at `path`")
	fdStore := fs.Bool("fd-store", false, "keep the listener in systemd's file descriptor store")
	idleGrace := fs.Duration("idle-grace", httpdrain.DefaultIdleGrace, "while draining, close a keep-alive connection only after its client has been silent this long (raise it above the longest pause of your clients)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s [-listen ADDR] [-pid-file PATH] [-control PATH] [-fd-store] [-drain DURATION]\n\n", name)
		fmt.Fprintf(stderr, "A zero-downtime HTTP server: SIGHUP upgrades it (new binary, same sockets),\nSIGTERM or SIGINT drains and stops it.\n\nOptions:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected argument %q\n", name, fs.Arg(0))
		fs.Usage()
		return 2
	}

	log := slog.New(slog.NewTextHandler(stderr, nil)).With("pid", os.Getpid())
	upg, err := baton.New(baton.Options{
		PIDFile:        *pidFile,
		UpgradeTimeout: *timeout,
		Control:        *control,
		FDStore:        *fdStore,
		Logger:         log,
	})
	if err != nil {
		log.Error("cannot take over", "err", err)
		return 1
	}
	defer upg.Stop()
	log = log.With("gen", upg.Generation())

	ln, err := upg.Listen("tcp", *listen)
	if err != nil {
		log.Error("cannot listen", "err", err)
		return 1
	}
	srv := httpdrain.New(&http.Server{
		Handler:           handler(upg.Generation()),
		ReadHeaderTimeout: 10 * time.Second,
	}, httpdrain.Options{Logger: log, IdleGrace: *idleGrace})
	go srv.Serve(ln)

	upg.HandleSignals()
	if err := upg.Ready(); err != nil {
		log.Error("cannot become ready", "err", err)
		return 1
	}
	log.Info("serving", "addr", ln.Addr().String())

	<-upg.Exit()
	ctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	start := time.Now()
	if err := srv.Drain(ctx); err != nil {
		log.Warn("drained at the deadline", "err", err)
	} else {
		log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	}
	if upg.ExecRequested() {
		// SIGHUP under daemontools, runit or s6 (-control): upgrade in
		// place, keeping the pid the supervisor tracks. Exec returns only
		// if it could not re-execute; the supervisor then starts the next
		// instance, which takes over from the interim generation.
		log.Error("cannot upgrade in place", "err", upg.Exec())
		return 1
	}
	return 0
}

func handler(gen int) http.Handler {
	pid := os.Getpid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
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
