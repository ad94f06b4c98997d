//go:build linux || darwin

package baton

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/environ"
	"github.com/batonhq/baton/internal/exepath"
	"github.com/batonhq/baton/internal/svstatus"
)

// Supervised restarts (Options.Control under daemontools, runit or s6).
//
// The supervisor tracks one process and starts ./run again when it exits.
// To restart without a gap, the tracked generation, told to stop while
// the supervisor still wants the service up, first hands its sockets to an
// interim generation — started detached, so the supervisor does not track
// it — and then drains and exits. The supervisor starts the next instance,
// which takes the sockets over from the interim one through the control
// socket; the interim one then drains and exits too. The kernel keeps
// accepting connections into the same listening sockets all along.
//
// The interim generation runs the code that serves now (the running
// binary, not Options.Executable): it only bridges the gap, and a deploy
// that replaced the file with a broken build must not break the bridge.
//
// While the supervisor runs and wants the service up, the interim
// generation serves for as long as it takes: a new instance that exits,
// hangs or cannot even be started (a missing or non-executable binary, a
// broken build) is retried by the supervisor every second or so, and each
// failed attempt is logged at error level, as is every UpgradeTimeout
// without a take-over. Stopping would turn a bad deploy into an outage
// while the supervisor still asks for the service; serving the old code
// keeps it up until the operator fixes the deploy or takes the service
// down. The interim generation stops by itself when the supervisor wants
// the service down (svc -d after svc -t, or a status written just after
// the signal), when the supervisor is gone (nobody could stop it any
// more), when its status is unreadable, or when the supervisor has run an
// instance for UpgradeTimeout that never asked for the sockets: that one
// serves by other means (another control path, a build without baton) and
// needs the port.

// interimPoll is how often an interim generation reads the supervisor's
// status file: the supervisor writes it without telling anyone, so it must
// be looked at. 50 ms notices a failed attempt (a binary that cannot even
// be executed lives for a millisecond, but leaves a new stamp) well within
// the supervisor's one-second restart pace, at the cost of one small read.
const interimPoll = 50 * time.Millisecond

// supervised reports whether this generation restarts through an interim
// one: it has a control socket, and a supervisor runs it.
func (u *Upgrader) supervised() bool {
	return u.ctl != nil && u.ctl.dir != "" && !u.ctl.interim && canDetach()
}

// supervisorWantsUp reports whether the supervisor still wants the service
// up, so that a SIGTERM means a restart rather than a stop.
func (u *Upgrader) supervisorWantsUp() bool {
	st, err := u.ctl.dir.status()
	if err != nil {
		u.log.Warn("cannot read the supervisor's status; stopping", "dir", string(u.ctl.dir), "err", err)
		return false
	}
	return st.WantUp
}

// restartInterim hands the sockets to an interim generation. On success
// Exit is closed and this generation drains; the supervisor then starts
// the next instance.
//
// A request that finds a handover under way, or this generation already
// draining or stopping, joins what is happening and returns nil: a storm
// of restart signals (svc -t fifty times) makes one restart, and never a
// stop, which would cancel the handover in flight and leave nobody
// serving. A request that comes before Ready (the supervisor's signal
// reached a new instance while it was taking over) is carried out once
// this generation is ready (and its probation, if any, passed), and
// returns nil now: stopping a successor
// while its predecessor is committing to it would leave nobody serving.
// An error means no interim generation serves; the caller stops, and the
// supervisor's next instance binds afresh.
func (u *Upgrader) restartInterim() error {
	u.mu.Lock()
	// A successor on probation counts as not ready yet: its
	// predecessor may still be the one that serves on.
	ready, busy, over := u.isSettled(), u.upgrading != nil, u.handedOver || u.stopped
	u.mu.Unlock()
	switch {
	case over:
		return nil
	case busy:
		u.log.Info("restart: a handover is already under way; this restart request joins it")
		return nil
	case !ready:
		u.log.Info("restart: asked before this generation is ready; restarting as soon as it is")
		go u.whenReady("restart", func() {
			// The operator may have taken the service down meanwhile
			// (daemontools and s6 write "want down" after the signal).
			if !u.supervisorWantsUp() || u.restartInterim() != nil {
				u.Stop() // as HandleSignals does: the supervisor restarts us anyway
			}
		})
		return nil
	}
	u.log.Info("restart: handing the sockets to an interim generation until the supervisor starts the next instance", "supervisor", string(u.ctl.dir))
	// No probation for the interim generation: it runs the code that
	// serves now, and the supervisor waits for this process to exit.
	err := u.handover(u.interimStarter(), 0)
	if errors.Is(err, ErrUpgradeInProgress) || errors.Is(err, ErrStopped) {
		return nil // raced with another handover or a stop: joined it
	}
	return err
}

// interimStarter starts the interim generation from the running binary.
func (u *Upgrader) interimStarter() startFunc {
	return func(gen int, fds *fdSnapshot, deadline time.Time) (*child, error) {
		path, err := exepath.Running()
		if err != nil {
			return nil, &ChildError{Path: path, Err: err}
		}
		u.log.Info("starting the interim generation from the running binary", "generation", u.gen, "executable", path, "fds", fds.len())
		c, err := startChild(path, spawn{detached: true, env: []string{envInterim + "=1"}}, gen, fds, deadline)
		if err != nil {
			return nil, &ChildError{Path: path, Err: err}
		}
		return c, nil
	}
}

// watchInterim stops an interim generation once it has no reason to
// serve, and says loudly, meanwhile, that the new instances fail.
func (u *Upgrader) watchInterim() {
	u.mu.Lock()
	control := u.ctl.server
	u.mu.Unlock()
	if control == nil {
		// Ready could not put the control socket in place (it said
		// why): no new instance can take over, and the next one must
		// bind the port itself, which this generation holds.
		u.log.Error("interim generation: no control socket, so no new instance can take over; stopping", "control", u.ctl.path)
		u.Stop()
		return
	}
	var pred int
	if u.parent != nil {
		pred = u.parent.pid
	}
	w := newInterimWatch(pred, u.opts.upgradeTimeout(), time.Now())
	tick := time.NewTicker(interimPoll)
	defer tick.Stop()
	for {
		select {
		case <-u.exitC:
			return
		case now := <-tick.C:
			st, err := u.ctl.dir.status()
			if err != nil {
				u.log.Warn("interim generation: the supervisor's status is unreadable; stopping", "err", err)
				u.Stop()
				return
			}
			alive, err := u.ctl.dir.alive()
			if err != nil {
				// Cannot tell: the status file says the supervisor is
				// there, and stopping would take the service down.
				alive = true
			}
			u.mu.Lock()
			busy := u.upgrading != nil
			u.mu.Unlock()
			if u.interimEvent(w.observe(now, st, alive, busy)) {
				u.Stop()
				return
			}
		}
	}
}

// interimEvent logs what the watch saw and reports whether the interim
// generation must stop.
func (u *Upgrader) interimEvent(e interimEvent) (stop bool) {
	const hint = "look at the new instance's output and at ./run: the binary may be missing, not executable or broken, or fail before it reaches the control socket"
	switch e.kind {
	case interimAttemptFailed:
		args := []any{"attempt", e.attempts, "control", u.ctl.path, "hint", hint}
		if e.pid != 0 {
			args = append([]any{"instance", e.pid}, args...)
		}
		u.log.Error("interim generation: the supervisor's new instance exited without taking over; still serving the old code", args...)
	case interimStillWaiting:
		u.log.Error("interim generation: no new instance has taken over; still serving the old code while the supervisor wants the service up",
			"waited", e.waited.Round(time.Millisecond), "failed_attempts", e.attempts, "control", u.ctl.path, "hint", hint)
	case interimWantDown:
		u.log.Info("interim generation: the supervisor wants the service down; stopping")
		return true
	case interimSupervisorGone:
		u.log.Warn("interim generation: the supervisor is gone, and nobody could stop this generation any more; stopping", "supervisor", string(u.ctl.dir))
		return true
	case interimRival:
		u.log.Error("interim generation: the supervisor has run a new instance that never asked for the sockets; stopping so that it can have the port",
			"instance", e.pid, "waited", e.waited.Round(time.Millisecond), "control", u.ctl.path, "hint", "the run script must pass the same control socket path")
		return true
	}
	return false
}

type interimEventKind int

const (
	interimServe          interimEventKind = iota // nothing new: serve on
	interimAttemptFailed                          // a new instance came and went without taking over
	interimStillWaiting                           // another UpgradeTimeout without a take-over
	interimWantDown                               // the supervisor wants the service down
	interimSupervisorGone                         // no supervisor runs on the service directory
	interimRival                                  // an instance ran for UpgradeTimeout and never asked for the sockets
)

type interimEvent struct {
	kind     interimEventKind
	pid      int // the instance concerned, 0 if it was never seen
	attempts int // failed attempts so far
	waited   time.Duration
}

// interimWatch is what an interim generation makes of the supervisor's
// status, one look after another: pure, so that it can be tested without
// a supervisor.
type interimWatch struct {
	pred    int // the predecessor, draining: neither an attempt nor a rival
	timeout time.Duration
	start   time.Time

	seen     bool
	last     svstatus.Status
	since    time.Time // when last.PID was first seen
	asked    int       // the last tracked pid seen while a take-over ran: not a rival
	said     time.Time // when "still waiting" was last said, or start
	attempts int
}

func newInterimWatch(pred int, timeout time.Duration, now time.Time) *interimWatch {
	return &interimWatch{pred: pred, timeout: timeout, start: now, said: now}
}

// observe takes one look: the status (with its stamp), whether the
// supervisor is alive, whether a take-over is under way.
func (w *interimWatch) observe(now time.Time, st svstatus.Status, alive, busy bool) interimEvent {
	switch {
	case !alive:
		return interimEvent{kind: interimSupervisorGone}
	case !st.WantUp:
		return interimEvent{kind: interimWantDown}
	}
	prev, seen := w.last, w.seen
	w.last, w.seen = st, true
	if !seen || st.PID != prev.PID {
		w.since = now
	}
	if busy && st.PID != 0 {
		// Most likely the instance that asks for the sockets; when its
		// take-over fails (a timeout kills it) the supervisor may still
		// track it for a moment, which must not look like a rival.
		w.asked = st.PID
	}
	if seen {
		failed, pid := false, 0
		switch {
		case st.PID != prev.PID && prev.PID != 0 && prev.PID != w.pred:
			// The instance seen last is gone, and it did not take
			// over: the watch would have ended.
			failed, pid = true, prev.PID
		case st.PID == 0 && prev.PID == 0 && st.Stamp != prev.Stamp:
			// Down at both looks, with a state change in between: an
			// instance came and went unseen (a binary that could not
			// be executed lives for a millisecond).
			failed = true
		}
		if failed {
			w.attempts++
			w.said = now
			return interimEvent{kind: interimAttemptFailed, pid: pid, attempts: w.attempts}
		}
	}
	if st.PID != 0 && st.PID != w.pred && st.PID != w.asked && !busy && now.Sub(w.since) >= w.timeout {
		return interimEvent{kind: interimRival, pid: st.PID, waited: now.Sub(w.since)}
	}
	if now.Sub(w.said) >= w.timeout {
		w.said = now
		return interimEvent{kind: interimStillWaiting, attempts: w.attempts, waited: now.Sub(w.start)}
	}
	return interimEvent{kind: interimServe}
}

// ExecRequested reports whether this generation handed its sockets to an
// interim generation so that the program upgrades in place: a SIGHUP
// under daemontools, runit or s6 with Options.Control (svc -h, sv hup,
// s6-svc -h). The application then drains as after any upgrade and calls
// Exec instead of exiting, so the pid the supervisor tracks stays.
func (u *Upgrader) ExecRequested() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.ctl != nil && u.ctl.execRequested && u.handedOver
}

// Exec upgrades in place: it re-executes Options.Executable, with this
// process's arguments, in this process; the new image takes the sockets
// back from the interim generation through the control socket. Call it
// once this generation has drained, when ExecRequested reports true.
//
// Exec calls Stop first (if the application has not), then waits — at most
// UpgradeTimeout — until the interim generation says its control socket is
// in place: a new image that dialled before would find nobody there, start
// afresh, and fail to bind the port the interim generation holds. It
// returns only if it could not re-execute, or with ErrExecNotRequested if
// ExecRequested is false; the process should then exit, and the
// supervisor starts the next instance, which takes over the same way.
func (u *Upgrader) Exec() error {
	if !u.ExecRequested() {
		return ErrExecNotRequested
	}
	u.Stop()
	u.mu.Lock()
	interim := u.successor
	u.mu.Unlock()
	if interim != nil {
		timeout := u.opts.upgradeTimeout()
		if err := interim.waitServing(time.Now().Add(timeout)); err != nil {
			u.log.Warn("upgrading in place: the interim generation's control socket may not be in place; re-executing anyway", "control", u.ctl.path, "err", err)
		}
	}
	path, err := u.opts.executable()
	if err == nil {
		os.Chdir(initialWD)
		env := environ.Without(os.Environ(), envHandoff, envInterim)
		u.log.Info("upgrading in place: re-executing; the new image takes over from the interim generation", "executable", path, "pid", os.Getpid())
		err = syscall.Exec(path, os.Args, env)
	}
	err = fmt.Errorf("baton: upgrading in place: %w", err)
	u.log.Error("upgrading in place failed; exit, and the supervisor starts the next instance", "err", err)
	return err
}
