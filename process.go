//go:build linux || darwin

package baton

import (
	"os"
	"path/filepath"

	"github.com/batonhq/baton/internal/environ"
	"github.com/batonhq/baton/internal/exepath"
)

// initialWD is the working directory the process started in. Relative
// paths (the executable, the PID file) are resolved against it, so a
// program that changes directory still finds them; successors start there
// too. It is the one piece of package state, and the process fixes it.
var initialWD, _ = os.Getwd()

func absFromInitial(p string) string {
	if p == "" || filepath.IsAbs(p) || initialWD == "" {
		return p
	}
	return filepath.Join(initialWD, p)
}

// executable applies the policy documented on Options.Executable; its one
// home is internal/exepath, shared with the master.
func (o *Options) executable() (string, error) {
	if o.Executable != "" {
		p := absFromInitial(o.Executable)
		return p, exepath.Check(p)
	}
	return exepath.Self(initialWD)
}

// successorEnv is this process's environment without baton's private
// variables, plus the handoff variable for the successor.
func successorEnv(handoffFd int) []string {
	// WATCHDOG_PID names us; without it the successor takes WATCHDOG_USEC
	// as its own once it is the main process.
	env := environ.Without(os.Environ(), envHandoff, "WATCHDOG_PID")
	return append(env, formatHandoffEnv(handoffFd, os.Getpid()))
}
