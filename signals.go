//go:build linux || darwin

package baton

import (
	"os"
	"os/signal"
	"syscall"
)

// HandleSignals wires the common case: SIGHUP upgrades, SIGTERM and SIGINT
// stop. A failed upgrade is logged through Options.Logger and this
// generation keeps serving. The handler ends when Exit is closed; signals
// that arrive after that are ignored, not fatal. Call it before Ready, so
// an early SIGHUP cannot kill the process with the default action.
func (u *Upgrader) HandleSignals() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for {
			select {
			case s := <-sigs:
				if s != syscall.SIGHUP {
					u.Stop()
					continue
				}
				// Errors are logged by Upgrade itself.
				u.Upgrade()
			case <-u.exitC:
				// Keep the signals caught: a late SIGHUP or SIGTERM to a
				// draining generation must not kill it mid-drain.
				signal.Ignore(syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
				signal.Stop(sigs)
				return
			}
		}
	}()
}
