//go:build linux

package supervisor_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	demoserver "github.com/batonhq/baton/examples/httpserver/server"
	"github.com/batonhq/baton/internal/proctest"
	"github.com/batonhq/baton/supervisor"
)

// The test binary plays every process of these tests: re-executed through
// proctest's TestMain dispatch as the helper "baton", it runs the command
// its first argument names. The master under test, its trampoline, its
// workers and the scripts' "exec BINARY demo-server" all are this binary,
// and the environment variable proctest sets stays set across their execs,
// so each of them is dispatched here again.
//
//	run [flags] -- PROGRAM [ARGS...]   a master: supervisor.New and Run
//	_exec-worker PATH ARGV...          the trampoline: supervisor.ExecWorker
//	demo-server [flags]                the demo server (package baton)
//	lfds                               lfdsWorker: a worker that knows only LISTEN_FDS
//	fault                              faultWorker: a faulty generation
//	holder                             holderWorker: holds connections until killed
//	call CMD --control PATH            supervisor.Call; the response as JSON
//
// "run" exits as "baton run" does: 0, the worker's status, 2 for a Config
// it cannot use, 3 when it could not start or the first generation never
// served; "call" exits 0, 1 for a response that is not OK, 3 for no answer.
// What "baton run" prints for people is tested in cmd/baton, with the real
// command.
func init() { proctest.Register("baton", batonCommand) }

// testBin is this test binary, as the tests start it.
var testBin string

func batonCommand() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "baton (test): no command")
		os.Exit(2)
	}
	switch cmd, args := os.Args[1], os.Args[2:]; cmd {
	case "run":
		os.Exit(runMaster(args))
	case supervisor.WorkerCommand:
		err := supervisor.ExecWorker(args)
		fmt.Fprintln(os.Stderr, "baton:", err)
		os.Exit(127)
	case "demo-server":
		os.Exit(demoserver.Main("baton demo-server", args, os.Stderr))
	case "lfds":
		lfdsWorker()
	case "fault":
		faultWorker()
	case "holder":
		holderWorker()
	case "call":
		os.Exit(callMaster(args))
	default:
		fmt.Fprintf(os.Stderr, "baton (test): unknown command %q\n", cmd)
		os.Exit(2)
	}
}

// runMaster is "baton run", with the flags the tests use.
func runMaster(args []string) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	var listen []supervisor.ListenSpec
	fs.Func("listen", "", func(s string) error {
		spec, err := supervisor.ParseListen(s)
		listen = append(listen, spec)
		return err
	})
	cfg := supervisor.Config{Stderr: os.Stderr}
	fs.StringVar(&cfg.Ready, "ready", "", "")
	fs.DurationVar(&cfg.UpgradeTimeout, "upgrade-timeout", 0, "")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", 0, "")
	fs.IntVar(&cfg.RestartLimit, "restart-limit", 0, "")
	fs.DurationVar(&cfg.RestartWindow, "restart-window", 0, "")
	fs.StringVar(&cfg.Control, "control", "", "")
	fs.DurationVar(&cfg.Probation, "probation", 0, "")
	fs.IntVar(&cfg.MaxDraining, "max-draining", 0, "")
	fs.StringVar(&cfg.Metrics, "metrics", "", "")
	if err := fs.Parse(args); err != nil || fs.NArg() == 0 {
		return 2
	}
	cfg.Program, cfg.Args, cfg.Listen = fs.Arg(0), fs.Args()[1:], listen
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil)).With("baton", "master")
	m, err := supervisor.New(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "baton:", err)
		var cerr *supervisor.ConfigError
		if errors.As(err, &cerr) {
			return 2
		}
		return 3
	}
	m.HandleSignals()
	err = m.Run(context.Background())
	var gerr *supervisor.GenerationError
	var xerr *supervisor.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &gerr):
		fmt.Fprintf(os.Stderr, "baton: %v\nits last lines of stderr:\n%s\n", err, strings.Join(gerr.Stderr, "\n"))
		return 3
	case errors.As(err, &xerr):
		fmt.Fprintf(os.Stderr, "baton: worker %s\n", xerr.Status)
		return xerr.Code
	}
	fmt.Fprintln(os.Stderr, "baton:", err)
	return 1
}

// callMaster sends one command and prints the response as JSON.
func callMaster(args []string) int {
	fs := flag.NewFlagSet("call", flag.ContinueOnError)
	control := fs.String("control", "", "")
	if len(args) == 0 || fs.Parse(args[1:]) != nil {
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := supervisor.Call(ctx, *control, args[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, "baton: no answer from the master:", err)
		return 3
	}
	b, _ := json.Marshal(resp)
	fmt.Printf("%s\n", b)
	if !resp.OK {
		return 1
	}
	return 0
}
