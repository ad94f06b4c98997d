// Command greeter is the worker of the Kubernetes example: an HTTP server
// that reads its configuration, a JSON file from a ConfigMap, once at
// start, and runs as a worker generation of "baton run" inside the pod
// (see README.md beside this file, deployment.yaml and Containerfile).
//
// A new configuration goes live the way a new binary does: "baton run
// --watch" sees the ConfigMap change and starts a new generation, which
// reads the new file, takes the very same socket and, once it answers
// /healthz, replaces the old one. A configuration that does not parse
// makes the new generation exit before it is ready: the old one serves on
// and baton logs why.
//
//	GET /         the greeting, and the pid that answered
//	GET /healthz  200 once the server serves (readiness and startup probes)
//
// Flags: -config PATH (required), -socket NAME (the socket "baton run
// --listen NAME=…" passes; default web), -listen ADDR (used only when no
// socket of that name was passed: running it alone), -drain D.
package main

import (
	"context"
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

// HealthPath is what the probes of deployment.yaml and "baton run --ready"
// ask for.
const HealthPath = "/healthz"

// Config is the ConfigMap's config.json.
type Config struct {
	Greeting string `json:"greeting"`
}

func main() { os.Exit(run(os.Args[1:], os.Stderr)) }

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("greeter", flag.ContinueOnError)
	fs.SetOutput(stderr)
	configPath := fs.String("config", "", "the JSON configuration `file` (required), read once at start")
	socket := fs.String("socket", "web", "`name` of the listening socket passed by \"baton run --listen NAME=…\"")
	listen := fs.String("listen", "127.0.0.1:8080", "TCP `address` to listen on when no socket of -socket's name was passed")
	drain := fs.Duration("drain", 20*time.Second, "how long a retiring generation may drain; keep it below baton run's --drain-timeout")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if *configPath == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "greeter: -config FILE is required, and nothing else may follow the flags")
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("pid", os.Getpid())
	if err := serve(*configPath, *socket, *listen, *drain, log); err != nil {
		log.Error("exiting", "err", err)
		return 1
	}
	return 0
}

func readConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	if c.Greeting == "" {
		return c, fmt.Errorf("%s: no greeting", path)
	}
	return c, nil
}

func serve(configPath, socket, addr string, drain time.Duration, log *slog.Logger) error {
	upg, err := baton.New(baton.Options{Logger: log})
	if err != nil {
		return err
	}
	defer upg.Stop()
	// A configuration that does not parse ends this generation before it
	// is ready, and "baton run" keeps the previous one serving.
	cfg, err := readConfig(configPath)
	if err != nil {
		return fmt.Errorf("bad configuration: %w", err)
	}
	// By name: "baton run --listen web=tcp://:8080" passes the socket as
	// LISTEN_FDNAMES=web, whatever address it was bound to ("[::]:8080").
	// Alone, with no socket passed, the server listens itself.
	ln, err := upg.Listener(socket)
	if errors.Is(err, baton.ErrNoSuchName) {
		ln, err = upg.Listen("tcp", addr)
	}
	if err != nil {
		return fmt.Errorf("cannot listen: %w", err)
	}
	srv := httpdrain.New(&http.Server{
		Handler:           handler(cfg),
		ReadHeaderTimeout: 10 * time.Second,
	}, httpdrain.Options{Logger: log})
	upg.HandleSignals()
	go srv.Serve(ln)
	if err := upg.Ready(); err != nil {
		return err
	}
	log.Info("serving", "addr", ln.Addr().String(), "greeting", cfg.Greeting)
	<-upg.Exit()
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Drain(ctx); err != nil {
		log.Warn("drained at the deadline", "err", err)
	}
	return nil
}

// handler answers with the greeting and the pid that served, so that a
// client sees which generation, with which configuration, answered.
func handler(cfg Config) http.Handler {
	pid := os.Getpid()
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+HealthPath, func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s pid=%d\n", cfg.Greeting, pid)
	})
	return mux
}
