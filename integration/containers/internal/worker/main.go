// Command worker is the test worker of the container tests: an HTTP server
// run by "baton run" as PID 1 of a container, which leaves orphans behind
// and ends with a chosen exit status, so that the tests can see baton reap
// the orphans and end the container with the worker's status.
//
//	worker -socket NAME [-exit-status N] [-orphans N] [-orphan-life D] [-daemon] [-mark-dir DIR]
//
// It serves the socket "baton run --listen NAME=…" passed (GET / answers
// pid=<pid>), says ready, and on SIGTERM drains and exits with
// -exit-status. Before it is ready it double-forks -orphans children that
// exit after -orphan-life, and with -daemon one more that never exits by
// itself: each is the grandchild of the worker, whose child exits at once,
// so the kernel reparents it to the container's PID 1. An orphan stopped
// by SIGTERM leaves a file in -mark-dir. The binary is
// static (CGO_ENABLED=0): the container's root file system holds nothing
// but it, baton and the reference server.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/httpdrain"
)

// The hidden first arguments of the worker's own descendants, each
// followed by the orphan's life and the -mark-dir (or "").
const (
	cmdFork   = "fork"   // start an orphan, then exit at once
	cmdOrphan = "orphan" // sleep, then exit
)

func main() {
	if len(os.Args) == 4 {
		switch os.Args[1] {
		case cmdFork:
			os.Exit(fork(os.Args[2], os.Args[3]))
		case cmdOrphan:
			os.Exit(orphan(os.Args[2], os.Args[3]))
		}
	}
	os.Exit(serve())
}

// fork is the middle of the double fork: it starts the orphan and exits
// without waiting for it, so that the orphan loses its parent.
func fork(life, markDir string) int {
	cmd := exec.Command(os.Args[0], cmdOrphan, life, markDir)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "worker:", err)
		return 1
	}
	return 0
}

// orphan lives for life, or until SIGTERM: then, if markDir is set, it
// leaves a file there that says so, since the kernel's end of a pid
// namespace (SIGKILL) leaves none — the mark is the proof that baton
// stopped it.
func orphan(life, markDir string) int {
	d, err := time.ParseDuration(life)
	if err != nil {
		return 2
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM)
	select {
	case <-time.After(d):
		return 0
	case <-term:
		if markDir != "" {
			os.WriteFile(filepath.Join(markDir, "sigterm."+strconv.Itoa(os.Getpid())), nil, 0o644)
		}
		return 0
	}
}

// daemonLife is how long the -daemon orphan lives if nobody stops it:
// far longer than any test, which must see baton stop it.
const daemonLife = time.Hour

func serve() int {
	socket := flag.String("socket", "web", "`name` of the socket baton run passes")
	exitStatus := flag.Int("exit-status", 0, "exit with `N` after a drain")
	orphans := flag.Int("orphans", 0, "double-fork `N` children that exit after -orphan-life")
	orphanLife := flag.Duration("orphan-life", 200*time.Millisecond, "how long an orphan lives")
	daemon := flag.Bool("daemon", false, "double-fork one more child that never exits by itself")
	markDir := flag.String("mark-dir", "", "where an orphan stopped by SIGTERM leaves a file named sigterm.PID")
	flag.Parse()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid(), "worker", true)

	upg, err := baton.New(baton.Options{Logger: log})
	if err != nil {
		log.Error("new", "err", err)
		return 1
	}
	defer upg.Stop()
	ln, err := upg.Listener(*socket)
	if err != nil {
		log.Error("no socket", "name", *socket, "err", err)
		return 1
	}
	lives := make([]time.Duration, *orphans)
	for i := range lives {
		lives[i] = *orphanLife
	}
	if *daemon {
		lives = append(lives, daemonLife)
	}
	for _, life := range lives {
		// Wait for the middle process: the worker reaps its own child,
		// and the grandchild is an orphan from then on.
		cmd := exec.Command(os.Args[0], cmdFork, life.String(), *markDir)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			log.Error("double fork", "err", err)
			return 1
		}
	}
	pid := strconv.Itoa(os.Getpid())
	srv := httpdrain.New(&http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "pid=%s\n", pid)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}, httpdrain.Options{Logger: log})
	upg.HandleSignals()
	go srv.Serve(ln)
	if err := upg.Ready(); err != nil {
		log.Error("ready", "err", err)
		return 1
	}
	log.Info("serving", "orphans", len(lives))
	<-upg.Exit()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Drain(ctx)
	return *exitStatus
}
