//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/batonhq/baton/httpdrain"
)

// The HTTP helper is the server BenchmarkUpgradeUnderLoad upgrades, one
// shape for every library: one listener, registered as "web", served by a
// net/http.Server, drained by BENCH_DRAIN once the library says this
// generation must go.
//
//	BENCH_DRAIN  httpdrain: httpdrain.Server.Drain, which ends in
//	             http.Server.Shutdown once no request can be lost;
//	             shutdown: http.Server.Shutdown alone, Close at the deadline
//	BENCH_DRAIN_LOG  if set, httpdrain logs what it does, idle
//	                 connections closed included, on stderr
const (
	envDrain    = "BENCH_DRAIN"
	envDrainLog = "BENCH_DRAIN_LOG"
)

var drains = []string{"httpdrain", "shutdown"}

// The drain "idle" is httpdrain at its default IdleGrace, as a server
// that does not expect starved clients runs it (BenchmarkPausingClients).

// drainTimeout bounds a retiring generation's drain. The slowest request
// the benchmark sends takes loadSlow.
const drainTimeout = 10 * time.Second

// drainIdleGrace is httpdrain's IdleGrace here: ten times its default.
// The clients send requests back to back and are never idle, unless the
// machine starves them of CPU; on a shared machine that was seen to last
// 800 ms, and with the default (500 ms) a drain then closed every client's
// connection as idle just as the client sent its next request (eof, with
// either library). A connection that is really idle would hold a drain up
// by this much; here none is, and the failures left are the handoff's.
const drainIdleGrace = 5 * time.Second

// httpMain is one generation of the HTTP helper. It prints
// "ready pid=P addr=A" once it serves, "upgraded pid=P ns=D" (D as in
// handoffMain) or "upgrade-failed pid=P err=E" on SIGHUP, and drains and
// exits after a successful upgrade or on SIGTERM.
func httpMain() {
	go watchOwner()
	u, err := newUpgrader(os.Getenv(envLib))
	if err != nil {
		fail(err)
	}
	l, err := u.listener("web")
	if err != nil {
		fail(err)
	}
	pid := os.Getpid()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// loadgen's slow request: delay=<duration>.
			if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil && d > 0 {
				time.Sleep(min(d, drainTimeout))
			}
			fmt.Fprintf(w, "pid=%d\n", pid)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	serve, drain, err := newDrain(os.Getenv(envDrain), srv, u)
	if err != nil {
		fail(err)
	}
	go serve(l)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	if err := u.ready(); err != nil {
		fail(err)
	}
	fmt.Printf("ready pid=%d addr=%s\n", pid, l.Addr())
	for {
		select {
		case s := <-sigs:
			if s != syscall.SIGHUP {
				u.stop()
				continue
			}
			took, err := timedUpgrade(u)
			if err != nil {
				fmt.Printf("upgrade-failed pid=%d err=%q\n", pid, err)
				continue
			}
			fmt.Printf("upgraded pid=%d ns=%d\n", pid, took.Nanoseconds())
		case <-u.exit():
			ctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
			err := drain(ctx)
			cancel()
			u.stop()
			if err != nil {
				fail(fmt.Errorf("drain: %w", err))
			}
			return
		}
	}
}

// newDrain returns how srv serves a listener and how it drains, by name.
func newDrain(name string, srv *http.Server, u upgrader) (serve func(net.Listener) error, drain func(context.Context) error, err error) {
	switch name {
	case "handoff":
		// httpdrain at its default IdleGrace, handing idle keep-alive
		// connections to the successor over baton's generation link, and
		// serving those its predecessor hands over.
		bu, ok := u.(batonUpgrader)
		if !ok {
			return nil, nil, fmt.Errorf("%s=handoff needs baton's upgrader", envDrain)
		}
		handed, err := bu.u.Handed(httpdrain.DefaultHandoffName)
		if err != nil {
			return nil, nil, err
		}
		hs := httpdrain.New(srv, httpdrain.Options{Handoff: bu.u})
		go hs.Serve(handed)
		return hs.Serve, hs.Drain, nil
	case "httpdrain", "idle":
		o := httpdrain.Options{IdleGrace: drainIdleGrace}
		if name == "idle" {
			o.IdleGrace = 0 // the default
		}
		if os.Getenv(envDrainLog) != "" {
			o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("pid", os.Getpid())
		}
		hs := httpdrain.New(srv, o)
		return hs.Serve, hs.Drain, nil
	case "shutdown":
		// What tableflip's README does: Shutdown closes this process's
		// listener (never the socket the successor holds) and waits for
		// the connections to go idle.
		return srv.Serve, func(ctx context.Context) error {
			err := srv.Shutdown(ctx)
			if err != nil {
				srv.Close()
			}
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			return err
		}, nil
	}
	return nil, nil, fmt.Errorf("unknown %s %q", envDrain, name)
}
