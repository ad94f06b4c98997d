package main

import (
	"context"
	"fmt"
	"io"

	demoserver "github.com/batonhq/baton/examples/httpserver/server"
	"github.com/batonhq/baton/supervisor"
)

const usage = `Usage: baton <command> [flags]

baton replaces a network server — new binary, new config — without refusing,
resetting or dropping a single connection.

Commands:
  demo          run the demo server under load through repeated upgrades
                and report every failed request (there should be none)
  verify        the same load and report against your own running server,
                upgraded by your reload command: zero downtime, proven in CI
  demo-server   the demo server alone (what "baton demo" runs)
  run           a stable master: open the sockets once, run a program as
                worker generations, reload them without dropping a request
  reload        start a new generation under "baton run"; wait until it serves
  status        the master and its generations
  stop          stop the master and all its generations
  help          this text

Run "baton <command> -h" for a command's flags.
`

// run is the whole CLI; main only wires the process to it.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	u := ui{stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	switch cmd, rest := args[0], args[1:]; cmd {
	case "demo":
		return runDemo(ctx, u, rest)
	case "verify":
		return runVerify(ctx, u, rest)
	case "demo-server":
		return demoserver.Main("baton demo-server", rest, stderr)
	case "run":
		return runMaster(ctx, u, rest)
	case supervisor.CmdReload, supervisor.CmdStatus, supervisor.CmdStop:
		return runControl(ctx, u, cmd, rest)
	case supervisor.WorkerCommand:
		return runWorker(u, rest)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	default:
		u.errorf("unknown command %q", cmd)
		u.hint(`run "baton help" for the list of commands`)
		return exitUsage
	}
}
