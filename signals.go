//go:build linux || darwin

package baton

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
)

// HandleSignals wires the common case: SIGHUP upgrades, SIGTERM and SIGINT
// stop. A failed upgrade is logged through Options.Logger and this
// generation keeps serving. A SIGHUP that arrives before Ready upgrades
// once this generation is ready (any number of them, one upgrade): the
// operator asked for the new binary, and this one was already starting.
// Once Exit is closed this generation drains: SIGHUP, SIGTERM and SIGINT
// are then ignored, not fatal (a service manager's stop sends SIGTERM to
// every process of the service: a draining one finishes its requests),
// and HurrySignal closes Hurry (Options.MaxDraining sends it to the oldest
// draining generation; an operator may too). A SIGHUP to a successor on
// probation (Options.Probation) upgrades once the probation passed. Call
// it before Ready, so an early SIGHUP cannot kill the process with the
// default action.
//
// With Options.Control, under daemontools, runit or s6, SIGTERM restarts
// when the supervisor still wants the service up (svc -t, sv restart,
// s6-svc -r) and stops when it does not (svc -d, sv stop, s6-svc -d).
// SIGHUP (svc -h, sv hup, s6-svc -h) upgrades in place, keeping the pid
// the supervisor tracks: this generation hands its sockets to an interim
// one and closes Exit; ExecRequested then reports true, and the
// application, once it has drained, calls Exec, which re-executes the
// program in the same process; the new image takes the sockets back
// through the control socket. The supervisor sees nothing. See
// Options.Control.
func (u *Upgrader) HandleSignals() {
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	if len(hurrySignals) > 0 {
		hs := make(chan os.Signal, 1)
		signal.Notify(hs, hurrySignals...)
		go u.hurryOnSignal(hs)
	}
	go func() {
		for {
			select {
			case s := <-sigs:
				// Errors are logged by the handover itself.
				switch {
				case s == syscall.SIGINT:
					u.Stop()
				case s == syscall.SIGTERM && !u.supervised():
					u.Stop()
				case s == syscall.SIGTERM && !u.supervisorWantsUp():
					u.Stop()
				case s == syscall.SIGTERM:
					if u.restartInterim() != nil {
						// The supervisor restarts us anyway; the next
						// instance binds afresh.
						u.Stop()
					}
				case u.supervised(): // SIGHUP: upgrade in place
					if u.restartInterim() == nil {
						u.mu.Lock()
						u.ctl.execRequested = true
						u.mu.Unlock()
					}
				case u.opts.Probation > 0:
					// With a probation an upgrade lasts the window: run
					// it aside, so that a SIGTERM meanwhile is heard (and
					// ends the window early, see Options.Probation).
					go u.hangUp()
				default:
					u.hangUp()
				}
			case <-u.exitC:
				// Keep the signals caught: a late SIGHUP or SIGTERM to a
				// draining generation must not kill it mid-drain (a
				// service manager's stop sends SIGTERM to every process
				// of the service: this one finishes its requests).
				signal.Ignore(syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
				signal.Stop(sigs)
				return
			}
		}
	}()
}

// hangUp upgrades on SIGHUP, or once this generation is ready and off
// probation if it is not yet.
func (u *Upgrader) hangUp() {
	switch err := u.Upgrade(); {
	case errors.Is(err, ErrNotReady):
		u.upgradeWhenReady("SIGHUP before ready: upgrading as soon as this generation is ready")
	case errors.Is(err, ErrOnProbation):
		u.upgradeWhenReady("SIGHUP during the probation: upgrading as soon as it passed")
	}
}

// hurryOnSignal closes Hurry on HurrySignal to a generation that drains
// (Exit is closed); before that the signal means nothing and is logged.
// It catches the signal for the life of the process, so that none kills
// it with the default action.
func (u *Upgrader) hurryOnSignal(sigs <-chan os.Signal) {
	for range sigs {
		select {
		case <-u.exitC:
			u.hurryNow("asked to by a newer generation or an operator (HurrySignal)")
		default:
			u.log.Warn("ignoring HurrySignal: this generation does not drain", "generation", u.gen)
		}
	}
}

// upgradeWhenReady carries out a SIGHUP that came before Ready once this
// generation is ready, and one that came during its probation once the
// probation passed. Further SIGHUPs meanwhile join it. It gives up if
// this generation stops first, or is not ready within UpgradeTimeout (its
// predecessor, if any, kills it then).
func (u *Upgrader) upgradeWhenReady(why string) {
	if !u.hupPending.CompareAndSwap(false, true) {
		return
	}
	u.log.Warn(why, "generation", u.gen)
	go func() {
		defer u.hupPending.Store(false)
		u.whenReady("SIGHUP", func() { u.Upgrade() })
	}()
}
