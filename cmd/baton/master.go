package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/batonhq/baton/supervisor"
)

const runUsage = `Usage: baton run [flags] -- PROGRAM [ARGS...]

A small master that opens the listening sockets once and runs PROGRAM as
generation after generation of workers, handing every one the same sockets
the way systemd socket activation does (descriptors 3 and up, LISTEN_FDS,
LISTEN_FDNAMES, LISTEN_PID), so any socket-activated server, in any
language, gets zero-downtime reloads unchanged. SIGHUP or "baton reload"
starts a new generation; only once it is ready is the old one told to drain
(-stop-signal) and, after -drain-timeout, killed. A new generation that
exits or is not ready in time is killed; the old one serves on.

A serving worker that fails (exits with a status other than 0, or is
killed) is restarted with a backoff (100ms, doubling up to 5s): the master
still holds the sockets, so connections wait in the accept queue meanwhile.
More than -restart-limit failures within -restart-window, and the master
gives up and exits with the worker's status. A worker that exits 0 by
itself stops the master.

With -probation, the old generation serves beside the new one for that
long before it drains: if the new one dies meanwhile, the old one serves on
and the reload fails. -max-draining bounds the generations draining at once
(the oldest beyond it is killed). "baton status" shows each generation's
connections and memory, and -metrics serves them to Prometheus.

The master reaps every child (it can be PID 1 of a container), forwards
SIGUSR1, SIGUSR2 and SIGWINCH to the serving worker, stops everything on
SIGINT or SIGTERM and exits with the worker's status.

Flags:
`

const runExamples = `
Examples:
  baton run --listen tcp://127.0.0.1:8080 -- ./server
  baton run --listen web=tcp://:80 --listen admin=unix:///run/app/admin.sock \
      --ready http://127.0.0.1:80/healthz -- python3 app.py
  baton reload                      # from another shell: new generation, same sockets
`

// listFlag collects repeated --listen values.
type listFlag []supervisor.ListenSpec

func (l *listFlag) String() string { return fmt.Sprint(*l) }
func (l *listFlag) Set(s string) error {
	spec, err := supervisor.ParseListen(s)
	var lerr *supervisor.ListenError
	if errors.As(err, &lerr) {
		return errors.New(lerr.Reason) // the flag package names the flag
	}
	if err != nil {
		return err
	}
	*l = append(*l, spec)
	return nil
}

// controlFlags are the flags every command that reaches a master shares.
func controlFlags(fs *flag.FlagSet) (control, name *string) {
	control = fs.String("control", "", "`path` of the master's control socket (default: from -name, "+supervisor.DefaultControlPath("NAME")+")")
	name = fs.String("name", supervisor.DefaultName, "`name` of the service, for the default control socket")
	return control, name
}

func controlPath(control, name string) string {
	if control != "" {
		return control
	}
	return supervisor.DefaultControlPath(name)
}

// runMaster is "baton run".
func runMaster(ctx context.Context, u ui, args []string) int {
	fs := flag.NewFlagSet("baton run", flag.ContinueOnError)
	fs.SetOutput(u.stderr)
	var listen listFlag
	fs.Var(&listen, "listen", "open a socket: `[NAME=]SCHEME://ADDRESS`, SCHEME tcp, tcp4, tcp6, udp, udp4, udp6 or unix (repeatable)")
	ready := fs.String("ready", supervisor.ReadyNotify, "how a generation says it is ready: `notify` (READY=1 on NOTIFY_SOCKET), tcp, or an http:// URL that must answer 200")
	upgradeTimeout := fs.Duration("upgrade-timeout", supervisor.DefaultUpgradeTimeout, "how long a new generation may take to be ready")
	drainTimeout := fs.Duration("drain-timeout", supervisor.DefaultDrainTimeout, "how long a retiring generation may drain before SIGKILL")
	stopSignal := fs.String("stop-signal", "TERM", "`signal` that tells a generation to drain and exit")
	restartLimit := fs.Int("restart-limit", supervisor.DefaultRestartLimit, "restart a serving worker that fails (exits non-zero or is killed) at most `N` times within -restart-window, then exit with its status; -1: never restart")
	restartWindow := fs.Duration("restart-window", supervisor.DefaultRestartWindow, "the `period` over which -restart-limit counts failures")
	probation := fs.Duration("probation", 0, "after a new generation is ready, let the old one serve beside it for `duration` before it drains; if the new one dies meanwhile, the old one serves on and the reload fails (default 0: no probation)")
	maxDraining := fs.Int("max-draining", 0, "at most `N` generations draining at once: beyond it the oldest is killed (SIGKILL), its connections dropped (default 0: unbounded)")
	metrics := fs.String("metrics", "", "serve Prometheus metrics on GET /metrics at `addr`ess HOST:PORT; :PORT is 127.0.0.1:PORT (default: none)")
	var watch stringsFlag
	fs.Var(&watch, "watch", "reload when the file at `path` changes, e.g. the program's binary or its config (repeatable)")
	control, name := controlFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(u.stderr, runUsage)
		fs.PrintDefaults()
		fmt.Fprint(u.stderr, runExamples)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() == 0 {
		u.errorf("no program to run")
		u.hint("baton run [flags] -- PROGRAM [ARGS...]")
		return exitUsage
	}
	// The values of supervisor.Config.RestartLimit, where 0 is "the
	// default": refused here rather than read as the default, since
	// before -1 it meant "never", and a silent change from never to five
	// restarts would surprise whoever wrote it.
	switch {
	case *restartLimit == 0:
		u.errorf("-restart-limit 0: say -1 to never restart, or a number of restarts")
		u.hint("-restart-limit -1 makes the first failure of the worker stop baton run")
		return exitUsage
	case *restartLimit < supervisor.RestartNever || *restartWindow <= 0:
		u.errorf("-restart-limit must be -1 (never) or more than 0, -restart-window more than 0")
		return exitUsage
	}
	if *probation < 0 || *maxDraining < 0 {
		u.errorf("-probation and -max-draining must not be negative")
		return exitUsage
	}
	sig, ok := signalByName(*stopSignal)
	if !ok {
		u.errorf("-stop-signal %q: unknown signal", *stopSignal)
		u.hint("use a name such as TERM, INT, QUIT, USR1 or WINCH")
		return exitUsage
	}
	m, err := supervisor.New(supervisor.Config{
		Program:        fs.Arg(0),
		Args:           fs.Args()[1:],
		Listen:         listen,
		Ready:          *ready,
		UpgradeTimeout: *upgradeTimeout,
		DrainTimeout:   *drainTimeout,
		StopSignal:     sig,
		RestartLimit:   *restartLimit,
		RestartWindow:  *restartWindow,
		Probation:      *probation,
		MaxDraining:    *maxDraining,
		Metrics:        *metrics,
		Control:        *control,
		Name:           *name,
		Stderr:         u.stderr,
		Logger:         slog.New(slog.NewTextHandler(u.stderr, nil)).With("baton", "master"),
	})
	if err != nil {
		u.errorf("%v", err)
		var cerr *supervisor.ConfigError
		switch {
		case errors.Is(err, supervisor.ErrControlInUse):
			u.hint(`stop it first ("baton stop"), or give this one its own -name or -control`)
		case errors.Is(err, syscall.EADDRINUSE):
			u.hint("another process listens there (a worker left by a master that was killed?): stop it, or pick another address (-listen or -metrics)")
		case errors.As(err, &cerr):
			return exitUsage
		}
		return exitNoStart
	}
	m.HandleSignals()
	if len(watch) > 0 {
		wctx, stopWatch := context.WithCancel(ctx)
		defer stopWatch()
		go watchFiles(wctx, watch, watchInterval, func(ctx context.Context) error {
			res, err := m.Reload(ctx)
			if err == nil && !res.OK {
				err = errors.New(res.Error)
			}
			return err
		}, u.infof)
	}
	err = m.Run(ctx)
	var gerr *supervisor.GenerationError
	var xerr *supervisor.ExitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &gerr):
		u.errorf("%v", err)
		if len(gerr.Stderr) > 0 {
			u.infof("its last lines of stderr:\n%s", tail(strings.Join(gerr.Stderr, "\n"), supervisor.StderrLines))
		}
		u.hint("the first generation must start and be ready (-ready %s) within -upgrade-timeout", *ready)
		return exitNoStart
	case errors.As(err, &xerr):
		u.infof("worker %s", xerr.Status)
		return xerr.Code
	default:
		u.errorf("%v", err)
		return exitFailed
	}
}

func signalByName(s string) (syscall.Signal, bool) {
	sig, ok := stopSignals[strings.TrimPrefix(strings.ToUpper(s), "SIG")]
	return sig, ok
}

// runControl is "baton reload", "baton status" and "baton stop".
func runControl(ctx context.Context, u ui, cmd string, args []string) int {
	fs := flag.NewFlagSet("baton "+cmd, flag.ContinueOnError)
	fs.SetOutput(u.stderr)
	asJSON := fs.Bool("json", false, "print the answer as JSON on stdout")
	var master *bool
	if cmd == supervisor.CmdReload {
		master = fs.Bool("master", false, "upgrade the master itself in place instead: exec its new binary, same pid, same sockets and workers")
	}
	timeout := fs.Duration("timeout", 0, "give up after `duration` (default: none; a reload ends by the master's -upgrade-timeout)")
	control, name := controlFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(u.stderr, "Usage: baton %s [flags]\n\n%s\nFlags:\n", cmd, controlHelp[cmd])
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		u.errorf("unexpected argument %q", fs.Arg(0))
		return exitUsage
	}
	if *timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *timeout)
		defer cancel()
	}
	path := controlPath(*control, *name)
	if master != nil && *master {
		cmd = supervisor.CmdExec
	}
	resp, err := supervisor.Call(ctx, path, cmd)
	if err != nil {
		u.errorf("no answer from the master at %s: %v", path, err)
		if errors.Is(err, supervisor.ErrRefused) {
			u.hint("a master answers only its own user: run this as the user that runs it")
		} else {
			u.hint(`is "baton run" running? Give it and this command the same -control or -name`)
		}
		return exitNoStart
	}
	switch cmd {
	case supervisor.CmdReload:
		res := supervisor.Result{Error: resp.Error}
		if resp.Result != nil {
			res = *resp.Result
		}
		if *asJSON {
			printJSON(u, res)
		} else if resp.OK {
			u.infof("reloaded: generation %d (pid %d) serves, pid %d drains; took %v", res.Gen, res.NewPID, res.OldPID, res.Duration.Round(time.Millisecond))
		} else {
			u.errorf("reload failed: %s", resp.Error)
			if len(res.Stderr) > 0 {
				u.infof("last lines of the new generation's stderr:\n%s", tail(strings.Join(res.Stderr, "\n"), supervisor.StderrLines))
			}
			switch {
			case errors.Is(resp.Err(), supervisor.ErrReloadInProgress):
				u.hint(`wait for it ("baton status" shows it), then reload again if it started before your change`)
			case res.OldPID != 0:
				u.hint("the old generation (pid %d) still serves", res.OldPID)
			}
		}
	case supervisor.CmdStatus:
		if resp.Status == nil {
			u.errorf("the master sent no status: %s", resp.Error)
			return exitFailed
		}
		if *asJSON {
			printJSON(u, resp.Status)
		} else {
			printStatus(u, resp.Status)
		}
	case supervisor.CmdExec:
		if *asJSON {
			printJSON(u, resp)
		} else if resp.OK && resp.Status != nil {
			u.infof("the master (pid %d) runs its new binary; generation %d serves on", resp.Status.PID, servingGen(resp.Status))
		} else if !resp.OK {
			u.errorf("the master's upgrade failed: %s", resp.Error)
			u.hint("the master runs on as it was")
			return exitFailed
		}
	case supervisor.CmdStop:
		if *asJSON {
			printJSON(u, resp)
		} else if resp.OK {
			u.infof("stopped")
		}
	}
	if !resp.OK {
		if cmd != supervisor.CmdReload {
			u.errorf("%s", resp.Error)
		}
		return exitFailed
	}
	return exitOK
}

var controlHelp = map[string]string{
	supervisor.CmdReload: `Starts a new generation under the master started by "baton run" and waits
until it is ready (the old one then drains) or has failed (the old one serves
on). Exits 0 on success, 1 on failure (the reason and the new generation's
last lines of stderr are printed), 3 if no master answered.

With -master, upgrades the master itself instead: it execs its new binary
(the path it was started as), keeping its pid, its sockets and its workers.
`,
	supervisor.CmdStatus: `Prints the master and each of its generations: pid, state, when it started,
how long it took to be ready, since when it drains, its established
connections and resident memory; and the reloads that succeeded and failed
(with the last error), the restarts, the generations killed, the drains.
`,
	supervisor.CmdStop: `Stops the master: every generation is told to drain, and the command returns
once they have all exited.
`,
}

func servingGen(st *supervisor.Status) int {
	for _, g := range st.Generations {
		if g.State == supervisor.StateServing {
			return g.Gen
		}
	}
	return 0
}

func printJSON(u ui, v any) {
	b, _ := json.MarshalIndent(v, "", "  ")
	fmt.Fprintf(u.stdout, "%s\n", b)
}

func printStatus(u ui, st *supervisor.Status) {
	w := u.stdout
	fmt.Fprintf(w, "master      pid %d  %s  since %s\n", st.PID, st.State, st.Started.Format(time.DateTime))
	fmt.Fprintf(w, "control     %s\n", st.Control)
	for _, l := range st.Listeners {
		fmt.Fprintf(w, "listen      %s\n", l)
	}
	for _, g := range st.Generations {
		fmt.Fprintf(w, "gen %-7d pid %d  %-9s started %s  age %v", g.Gen, g.PID, g.State, g.Started.Format(time.TimeOnly), g.Age.Round(time.Second))
		if g.ReadyAfter > 0 {
			fmt.Fprintf(w, "  ready after %v", g.ReadyAfter.Round(time.Millisecond))
		}
		if !g.DrainingSince.IsZero() {
			fmt.Fprintf(w, "  draining since %s", g.DrainingSince.Format(time.TimeOnly))
		}
		if g.Connections >= 0 {
			fmt.Fprintf(w, "  %d conns", g.Connections)
		}
		if g.RSS > 0 {
			fmt.Fprintf(w, "  rss %.1f MiB", float64(g.RSS)/(1<<20))
		}
		fmt.Fprintln(w)
	}
	up := st.Upgrades
	fmt.Fprintf(w, "reloads     %d ok, %d failed", up.OK, up.Failed)
	if up.LastError != "" {
		fmt.Fprintf(w, "; last failure at %s: %s", up.LastErrorAt.Format(time.DateTime), up.LastError)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "restarts    %d; killed %d at the drain deadline, %d beyond -max-draining\n", st.Restarts, st.DrainKills, st.LimitKills)
	if d := st.Drains; d.Count > 0 {
		fmt.Fprintf(w, "drains      %d, mean %v, last %v\n", d.Count, (d.Sum / time.Duration(d.Count)).Round(time.Millisecond), d.Last.Round(time.Millisecond))
	}
	if st.Reaped > 0 {
		fmt.Fprintf(w, "orphans     %d reaped\n", st.Reaped)
	}
}

// runWorker is the hidden trampoline command: see supervisor.ExecWorker.
func runWorker(u ui, args []string) int {
	err := supervisor.ExecWorker(args)
	u.errorf("%v", err)
	if errors.Is(err, os.ErrPermission) {
		return 126
	}
	return 127
}
