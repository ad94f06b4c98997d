//go:build linux || darwin

package baton

import (
	"errors"
	"fmt"
	"os"
	"time"
)

// An upgrade, whoever asked for it, is one handover: start (or accept) a
// successor, hand it every registered descriptor, wait for its ready, tell
// systemd, acknowledge, and close Exit. Only how the successor is started
// differs between topologies (a startFunc).

// Upgrade starts a successor from the executable chosen by
// Options.Executable, hands it every registered descriptor and waits until
// it is ready. It returns nil once the successor is ready; Exit is then
// closed and this generation should drain and exit. On failure the
// successor is killed and reaped, this generation keeps serving, and the
// error says why (a *ChildError: exit status, signal, timeout, refused
// handoff). At most one upgrade runs at a time: a concurrent call returns
// ErrUpgradeInProgress.
//
// With Options.Probation, Upgrade returns once the probation has passed
// (nil; Exit is then closed) or the successor failed in it (a *ChildError
// matching ErrProbationFailed; this generation serves on). A successor on
// probation refuses to upgrade: ErrOnProbation.
//
// Under systemd (NOTIFY_SOCKET set) Upgrade also speaks for the service:
// RELOADING=1 when it starts; then MAINPID=<successor>, READY=1 and a
// barrier, so systemd follows the successor before this process exits; or
// READY=1 again if the upgrade failed. With a probation, MAINPID and
// READY=1 follow only once it passed. The successor is started as a
// child of systemd rather than of this process (see Options.Control for
// the other case where that matters), so that systemd stops it as it would
// a main process it started itself.
func (u *Upgrader) Upgrade() error {
	return u.handover(u.spawner(spawn{detached: u.mgr.notify != nil && canDetach()}), u.opts.Probation)
}

// spawner returns the start function of an upgrade to a child of ours.
func (u *Upgrader) spawner(how spawn) startFunc {
	return func(gen int, fds *fdSnapshot, deadline time.Time) (*child, error) {
		path, err := u.opts.executable()
		if err != nil {
			return nil, &ChildError{Path: path, Err: err}
		}
		u.log.Info("upgrading", "generation", u.gen, "executable", path, "fds", fds.len(), "detached", how.detached)
		c, err := startChild(path, how, gen, fds, deadline)
		if err != nil {
			return nil, &ChildError{Path: path, Err: err}
		}
		return c, nil
	}
}

// startFunc starts a successor of generation gen, handing it fds, which
// must be ready by deadline.
type startFunc func(gen int, fds *fdSnapshot, deadline time.Time) (*child, error)

// handover is every upgrade: to a child of ours (Upgrade), to an interim
// generation (a supervised restart) or to a new instance that asked through
// the control socket. start begins it; handover does the rest, with
// the successor on probation for that long (0: none).
func (u *Upgrader) handover(start startFunc, probation time.Duration) error {
	u.mu.Lock()
	switch {
	case u.stopped || u.handedOver:
		u.mu.Unlock()
		return ErrStopped
	case !u.isReady():
		u.mu.Unlock()
		return ErrNotReady
	case !u.isSettled():
		u.mu.Unlock()
		return ErrOnProbation
	case u.upgrading != nil:
		u.mu.Unlock()
		return ErrUpgradeInProgress
	}
	done := make(chan struct{})
	u.upgrading = done
	u.mu.Unlock()

	begin := time.Now()
	if err := u.mgr.notify.Reloading(); err != nil {
		u.log.Warn("telling systemd we reload", "err", err)
	}
	u.passLineage()
	u.passStats()
	c, err := u.upgrade(start, probation)
	if err == nil && probation > 0 {
		err = u.probation(c, probation)
	}

	u.countUpgrade(err)
	u.mu.Lock()
	u.upgrading = nil
	close(done)
	if err == nil {
		u.handedOver, u.successor = true, c
		close(u.exitC)
	}
	u.mu.Unlock()

	if err != nil {
		u.log.Error("upgrade failed; still serving", "generation", u.gen, "err", err)
		if nerr := u.mgr.notify.Send("READY=1", "STATUS="+statusText(fmt.Sprintf("upgrade failed, generation %d still serving: %v", u.gen, err))); nerr != nil {
			u.log.Warn("telling systemd we still serve", "err", nerr)
		}
		return err
	}
	u.log.Info("upgrade done; draining", "generation", u.gen, "successor", c.proc.Pid, "took", time.Since(begin).Round(time.Microsecond))
	go u.watchSuccessor(c)
	u.startDraining()
	return nil
}

// watchSuccessor reports a successor of ours that fails after it took
// over, while this generation still drains. Nobody else may be left to
// say it: in a self-upgrade the successor was the only other holder of
// the sockets, so its death takes the service down, and its exit status
// reaches only us, its parent. A clean exit (it handed over in turn, or
// was stopped) is not reported; neither is the end of a successor that is
// not our child, whose status we never see.
func (u *Upgrader) watchSuccessor(c *child) {
	<-c.exited
	if c.state == nil || c.state.Success() {
		return
	}
	u.log.Error("successor exited after taking over; unless another process holds the sockets, the service is down",
		"generation", u.gen, "successor", c.proc.Pid, "err", c.exitError())
}

// probation lets the successor c, acknowledged ready, serve beside this
// generation for window, and then tells it that it passed and hands it
// the service managers. It returns a *ChildError if c died (or broke the
// link) first; c is then killed, if need be, and reaped, and nothing
// names it: this generation serves on. Stop ends the window early, as
// passed.
func (u *Upgrader) probation(c *child, window time.Duration) error {
	acked := time.Now()
	u.log.Info("successor ready, on probation: both generations serve", "generation", u.gen, "successor", c.proc.Pid, "probation", window)
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.exited:
	case <-c.link.done:
	case <-u.stopC:
		u.log.Info("stopped during the successor's probation: it takes over now", "generation", u.gen, "successor", c.proc.Pid)
	}
	ended := time.Since(acked)
	failed := func(cause error) error {
		c.kill()
		return &ChildError{PID: c.proc.Pid, Path: c.path, Err: &ProbationError{After: ended, Probation: window, Err: cause}}
	}
	// Whatever woke us, a successor found dead has failed: Stop's early
	// pass must not hand the service to nobody.
	select {
	case <-c.exited:
		return failed(c.exitError())
	case <-c.link.done:
		// Usually it is exiting: give it a moment so the error can
		// say how it ended. One whose link broke while it lives broke
		// the protocol: it cannot be told it passed, and is killed.
		if c.waitExited(time.Second) {
			return failed(c.exitError())
		}
		return failed(c.link.err)
	default:
	}
	if err := c.link.passed(); err != nil {
		if c.waitExited(time.Second) {
			err = fmt.Errorf("%w (%v)", err, c.exitError())
		}
		return failed(fmt.Errorf("telling it the probation passed: %w", err))
	}
	// Told it passed, the successor names itself (PID file, control
	// socket) and says serving; only then are systemd and s6 told, so
	// that whoever acts on "systemctl reload" returning — kill -HUP
	// $(cat pidfile) — finds the successor named, not this generation,
	// which is about to drain and would drop the SIGHUP.
	if err := c.waitServing(time.Now().Add(u.opts.upgradeTimeout())); err != nil {
		if c.waitExited(time.Second) {
			err = fmt.Errorf("%w (%v)", err, c.exitError())
		}
		// It may have renamed its PID file in before it died: name
		// this generation again, which serves on.
		u.renamePIDFile()
		return failed(fmt.Errorf("after it was told the probation passed: %w", err))
	}
	u.handOverMainPID(c.proc.Pid)
	u.log.Info("successor passed its probation", "generation", u.gen, "successor", c.proc.Pid, "after", ended.Round(time.Millisecond))
	return nil
}

func (u *Upgrader) upgrade(start startFunc, probation time.Duration) (*child, error) {
	timeout := u.opts.upgradeTimeout()
	snap := u.reg.snapshot()
	snap.state = u.stateSnapshot()
	c, err := start(u.gen+1, snap, time.Now().Add(timeout))
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*child, error) {
		c.kill()
		return nil, &ChildError{PID: c.proc.Pid, Path: c.path, Err: err}
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	timedOut := func() (*child, error) {
		return fail(fmt.Errorf("not ready after %v, killed: %w", timeout, ErrTimeout))
	}
	select {
	case r := <-c.result:
		if errors.Is(r.err, os.ErrDeadlineExceeded) {
			return timedOut()
		}
		c.relay = r.relay // closed by fail's kill, if it comes to that
		if r.err != nil {
			// EOF or an abort usually means the successor is exiting: give
			// it a moment so the error can say how it ended.
			if c.waitExited(time.Second) {
				return fail(fmt.Errorf("%w (%v)", r.err, c.exitError()))
			}
			return fail(r.err)
		}
		if r.ready.PID != c.proc.Pid {
			return fail(protoErrorf("ready from pid %d, but the successor is %d", r.ready.PID, c.proc.Pid))
		}
		select {
		case <-c.exited:
			return fail(fmt.Errorf("exited right after ready: %w", c.exitError()))
		default:
		}
		if probation == 0 {
			// On probation, nothing names the successor before it
			// passed (see probation).
			u.handOverMainPID(c.proc.Pid)
		}
		if err := c.ack(probation); err != nil {
			if probation == 0 {
				u.takeBackMainPID()
			}
			// Most likely it died since its ready: say how.
			if c.waitExited(time.Second) {
				err = fmt.Errorf("%w (%v)", err, c.exitError())
			}
			return fail(fmt.Errorf("acknowledging ready: %w", err))
		}
		c.startLink()
		// Both serve from here, on probation too: datagrams of each
		// one's connections may reach the other (RelayPacket). A
		// successor that fails later is killed, which ends the link.
		u.relays().attach(toNewer, c.relay)
		return c, nil
	case <-c.exited:
		// Its last words may still be on the socket: an abort says why
		// it gave up, which its exit status does not. Without this, the
		// reason is lost whenever the exit is noticed first.
		var refused *refusedError
		var perr *ProtocolError
		r, ok := c.lastWords(time.Second)
		if r.relay != nil {
			r.relay.Close()
		}
		if ok && (errors.As(r.err, &refused) || errors.As(r.err, &perr)) {
			return fail(fmt.Errorf("%w (%v)", r.err, c.exitError()))
		}
		return fail(c.exitError())
	case <-timer.C:
		return timedOut()
	case <-u.stopC:
		return fail(fmt.Errorf("cancelled by Stop: %w", ErrStopped))
	}
}
