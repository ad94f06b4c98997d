//go:build linux || darwin

package baton

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/batonhq/baton/systemd"
)

// Upgrader hands this generation's sockets to a successor and tells the
// application when to drain. Create it with New, once per process.
type Upgrader struct {
	opts   Options
	log    *slog.Logger
	reg    *registry
	parent *parent // nil for a first generation
	gen    int
	pid    pidFile // path "" when there is no PID file

	// byUpgrade is true when our predecessor started us with Upgrade; it
	// then speaks for us to systemd. It is false for a first start and for
	// a takeover through the control socket.
	byUpgrade bool
	notify    *systemd.Notifier // nil unless systemd started the service
	// sv is the service directory when a supervisor of the daemontools
	// family runs us and Options.Control is set; interim is true for the
	// generation that holds the sockets between the supervised process's
	// exit and the start of the next one.
	sv      supervisorDir
	interim bool
	reexec  bool // Stop re-executes the program in place (SIGHUP, supervised)
	// hupPending: a SIGHUP came before Ready and waits for it
	// (upgradeWhenReady).
	hupPending atomic.Bool
	s6ready    *os.File // s6-supervise's notification-fd, until Ready
	control    *controlServer

	exitC chan struct{} // closed when this generation must drain and go
	stopC chan struct{} // closed by Stop

	readyMu sync.Mutex // serialises Ready

	mu         sync.Mutex
	ready      bool
	upgrading  chan struct{} // non-nil while an upgrade runs; closed when it ends
	handedOver bool          // a successor took over; exitC is closed
	stopped    bool
	// successor is kept for the life of the process: its handoff socket
	// stays open until we exit, so the successor's WaitForParent sees
	// exactly that, and its reaper goroutine collects it if it ever exits
	// while we still run.
	successor *child
}

var newCalled atomic.Bool

// New creates the Upgrader of this process. If this process was started by
// Upgrade, New receives the predecessor's descriptors; if that handoff is
// malformed it returns an error (and the predecessor, told why, keeps
// serving). Only the first call in a process succeeds.
func New(opts Options) (*Upgrader, error) {
	if !newCalled.CompareAndSwap(false, true) {
		return nil, errors.New("baton: New called more than once in this process")
	}
	return newUpgrader(opts)
}

func newUpgrader(opts Options) (*Upgrader, error) {
	u := &Upgrader{
		opts:  opts,
		log:   opts.Logger,
		reg:   &registry{},
		gen:   1,
		exitC: make(chan struct{}),
		stopC: make(chan struct{}),
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	if opts.PIDFile != "" {
		u.pid = pidFile{path: absFromInitial(opts.PIDFile)}
	}
	n, err := systemd.NewNotifier()
	if err != nil {
		// Not fatal: the service can serve, systemd just won't hear of it.
		u.log.Warn("not notifying the service manager", "err", err)
	}
	u.notify = n
	_, u.interim = os.LookupEnv(envInterim)
	os.Unsetenv(envInterim)
	if opts.Control != "" {
		u.sv = findSupervisor()
	}

	v, ok := os.LookupEnv(envHandoff)
	if ok {
		// Scrub it at once: the variable is for this process only, never
		// for anything it starts (a successor gets a fresh one).
		os.Unsetenv(envHandoff)
		fd, ppid, err := parseHandoffEnv(v)
		if err != nil {
			return nil, err
		}
		if !handoffFrom(fd, ppid) {
			// A stray copy inherited by a grandchild, or the incumbent
			// died before we got here: either way there is nobody to take
			// over from.
			u.log.Warn("ignoring a handoff from a process that did not start us", "pid", ppid)
		} else {
			p, entries, err := adoptParent(fd, ppid, opts.upgradeTimeout())
			if err != nil {
				return nil, err
			}
			u.parent, u.gen, u.byUpgrade = p, p.generation, true
			u.reg.inherit(entries)
			if err := u.preflight(); err != nil {
				return nil, err
			}
			u.log.Info("took over from predecessor", "generation", u.gen, "predecessor", ppid, "fds", len(entries))
			return u, nil
		}
	}

	// A first start: the sockets may come from systemd, or from an
	// instance that still serves, through the control socket.
	if err := u.adoptActivated(); err != nil {
		return nil, err
	}
	if sv := findSupervisor(); sv != "" {
		if u.s6ready, err = sv.s6NotificationFd(); err != nil {
			return nil, err
		}
	}
	if opts.Control != "" {
		if err := u.takeOver(opts.Control); err != nil {
			u.reg.closeAll(false, false)
			return nil, err
		}
	}
	if err := u.preflight(); err != nil {
		return nil, err
	}
	return u, nil
}

// preflight checks, before the application serves anything, what Ready
// will need: a PID file directory that takes a new file, and nothing but a
// socket at the control socket's path. A generation that fails here has
// accepted no connection yet, so failing it loses nothing; failing only in
// Ready, it would drop whatever it had accepted by then. A predecessor, if
// any, is told why and serves on. Ready checks again, for whatever changes
// in between.
func (u *Upgrader) preflight() error {
	err := u.pid.check()
	if err == nil && u.opts.Control != "" {
		if cerr := checkControlPath(absFromInitial(u.opts.Control)); cerr != nil {
			err = fmt.Errorf("baton: control socket %s: %w", u.opts.Control, cerr)
		}
	}
	if err == nil {
		return nil
	}
	if u.parent != nil {
		u.parent.abort(err.Error())
		u.parent.conn.Close()
	}
	if u.s6ready != nil {
		u.s6ready.Close() // never ready: s6 is not told so
	}
	u.reg.closeAll(false, false)
	return err
}

// takeOver asks the instance serving on the control socket at path for its
// descriptors. Nobody serving there is not an error: this is a first start.
func (u *Upgrader) takeOver(path string) error {
	conn, pid, err := dialControl(absFromInitial(path))
	if err != nil {
		return fmt.Errorf("baton: control socket %s: %w", path, err)
	}
	if conn == nil {
		u.log.Info("no running instance on the control socket: starting fresh", "control", path)
		return nil
	}
	p, entries, err := adoptConn(conn, pid, u.opts.upgradeTimeout())
	if err != nil {
		// Whatever listens there may not be ours at all: say where.
		return fmt.Errorf("baton: control socket %s: %w", path, err)
	}
	u.parent, u.gen = p, p.generation
	u.reg.inherit(entries)
	u.log.Info("took over through the control socket", "generation", u.gen, "predecessor", pid, "fds", len(entries))
	return nil
}

// Generation is 1 for a process not started by Upgrade, and one more than
// its predecessor's otherwise.
func (u *Upgrader) Generation() int { return u.gen }

// HasParent reports whether this process took over from a predecessor.
func (u *Upgrader) HasParent() bool { return u.parent != nil }

// Exit is closed when this generation must stop accepting, drain and exit:
// after a successful Upgrade, or after Stop.
func (u *Upgrader) Exit() <-chan struct{} { return u.exitC }

// WaitForParent blocks until the predecessor has exited, or ctx is done. It
// returns nil at once for a first generation.
func (u *Upgrader) WaitForParent(ctx context.Context) error {
	if u.parent == nil {
		return nil
	}
	select {
	case <-u.parent.gone:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Ready says this generation serves. It closes inherited descriptors that
// nobody asked for, tells the predecessor (which then drains) and writes
// the PID file. Until Ready, Upgrade refuses to run. Calling it again does
// nothing.
//
// In a successor, Ready fails before the predecessor is told anything if
// the PID file or the control socket cannot be written: a successor that
// would serve without them must not take over. The predecessor hears why,
// kills this process and keeps serving.
func (u *Upgrader) Ready() error {
	u.readyMu.Lock()
	defer u.readyMu.Unlock()
	u.mu.Lock()
	switch {
	case u.stopped:
		u.mu.Unlock()
		return ErrStopped
	case u.ready:
		u.mu.Unlock()
		return nil
	}
	u.mu.Unlock()

	for _, m := range u.reg.closeUnclaimed() {
		u.log.Info("closed an inherited descriptor nobody asked for", "name", m.Name, "network", m.Network, "address", m.Actual)
	}

	// Prepare the PID file before the predecessor drains, so an unwritable
	// directory fails this generation, not the service.
	var tmp string
	if u.pid.path != "" {
		var err error
		if tmp, err = u.pid.prepare(os.Getpid()); err != nil {
			u.refuse(err)
			return err
		}
	}
	var control *controlServer
	if u.opts.Control != "" {
		var err error
		if control, err = listenControl(absFromInitial(u.opts.Control)); err != nil {
			if tmp != "" {
				os.Remove(tmp)
			}
			err = fmt.Errorf("baton: control socket %s: %w", u.opts.Control, err)
			u.refuse(err)
			return err
		}
	}
	if u.parent != nil {
		if err := u.parent.ready(u.opts.upgradeTimeout()); err != nil {
			// The predecessor is stopped or wedged: serving beats waiting
			// for it. Its own timeout kills nobody once we are on our own.
			u.log.Warn("serving without the predecessor's acknowledgement", "predecessor", u.parent.pid, "err", err)
		}
	}
	// The PID file and the control socket name this generation, and it
	// is ready, in one step: whoever finds it through either (kill -HUP
	// $(cat pidfile), a supervisor's new instance) must find it ready,
	// or the request would fail with ErrNotReady.
	u.mu.Lock()
	if tmp != "" {
		if err := u.pid.commit(tmp); err != nil {
			u.mu.Unlock()
			if control != nil {
				control.close(false)
			}
			return err
		}
	}
	if control != nil {
		if err := control.commit(); err != nil {
			// Too late to fail: the predecessor drains. Serve on; only
			// the next supervised restart will not be seamless.
			u.log.Error("control socket: no new instance can take over from this generation", "control", u.opts.Control, "err", err)
			control = nil
		}
	}
	u.ready = true
	u.control = control
	u.mu.Unlock()
	if control != nil {
		go u.serveControl(control)
	}
	u.log.Info("ready", "generation", u.gen, "pid", os.Getpid())
	u.announceReady()
	if u.interim {
		go u.watchInterim()
	}
	return nil
}

// refuse tells the predecessor, if any, why this generation cannot be
// ready, so that its Upgrade fails at once with the cause ("PID file: …
// permission denied") rather than with an exit status, or with a timeout
// if the application does not exit. The predecessor then kills this
// process and keeps serving.
func (u *Upgrader) refuse(err error) {
	if u.parent != nil {
		u.parent.abort(err.Error())
	}
}

// Upgrade starts a successor from the executable chosen by
// Options.Executable, hands it every registered descriptor and waits until
// it is ready. It returns nil once the successor is ready; Exit is then
// closed and this generation should drain and exit. On failure the
// successor is killed and reaped, this generation keeps serving, and the
// error says why (a *ChildError: exit status, signal, timeout, refused
// handoff). At most one upgrade runs at a time: a concurrent call returns
// ErrUpgradeInProgress.
//
// Under systemd (NOTIFY_SOCKET set) Upgrade also speaks for the service:
// RELOADING=1 when it starts; then MAINPID=<successor>, READY=1 and a
// barrier, so systemd follows the successor before this process exits; or
// READY=1 again if the upgrade failed. The successor is started as a
// child of systemd rather than of this process (see Options.Control for
// the other case where that matters), so that systemd stops it as it would
// a main process it started itself.
func (u *Upgrader) Upgrade() error {
	return u.handover(u.spawner(spawn{detached: u.notify != nil && canDetach()}))
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
// the control socket. start begins it; handover does the rest.
func (u *Upgrader) handover(start startFunc) error {
	u.mu.Lock()
	switch {
	case u.stopped || u.handedOver:
		u.mu.Unlock()
		return ErrStopped
	case !u.ready:
		u.mu.Unlock()
		return ErrNotReady
	case u.upgrading != nil:
		u.mu.Unlock()
		return ErrUpgradeInProgress
	}
	done := make(chan struct{})
	u.upgrading = done
	u.mu.Unlock()

	begin := time.Now()
	if err := u.notify.Reloading(); err != nil {
		u.log.Warn("telling systemd we reload", "err", err)
	}
	c, err := u.upgrade(start)

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
		if nerr := u.notify.Send("READY=1", "STATUS="+statusText(fmt.Sprintf("upgrade failed, generation %d still serving: %v", u.gen, err))); nerr != nil {
			u.log.Warn("telling systemd we still serve", "err", nerr)
		}
		return err
	}
	u.log.Info("upgrade done; draining", "generation", u.gen, "successor", c.proc.Pid, "took", time.Since(begin).Round(time.Microsecond))
	go u.watchSuccessor(c)
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

func (u *Upgrader) upgrade(start startFunc) (*child, error) {
	timeout := u.opts.upgradeTimeout()
	c, err := start(u.gen+1, u.reg.snapshot(), time.Now().Add(timeout))
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
		u.handOverMainPID(c.proc.Pid)
		if err := c.ack(); err != nil {
			u.takeBackMainPID()
			// Most likely it died since its ready: say how.
			if c.waitExited(time.Second) {
				err = fmt.Errorf("%w (%v)", err, c.exitError())
			}
			return fail(fmt.Errorf("acknowledging ready: %w", err))
		}
		return c, nil
	case <-c.exited:
		// Its last words may still be on the socket: an abort says why
		// it gave up, which its exit status does not. Without this, the
		// reason is lost whenever the exit is noticed first.
		var refused *refusedError
		var perr *ProtocolError
		if r, ok := c.lastWords(time.Second); ok && (errors.As(r.err, &refused) || errors.As(r.err, &perr)) {
			return fail(fmt.Errorf("%w (%v)", r.err, c.exitError()))
		}
		return fail(c.exitError())
	case <-timer.C:
		return timedOut()
	case <-u.stopC:
		return fail(fmt.Errorf("cancelled by Stop: %w", ErrStopped))
	}
}

// Stop ends this generation's part: it cancels an upgrade in flight (the
// successor is killed), refuses further upgrades and closes Exit. If no
// successor took over, this is the final stop of the service: the files of
// unix sockets are removed, and the PID file too if it still names this
// process. (A successor stopped before Ready removes only the socket
// files it created: its predecessor still serves the inherited ones.) Stop
// does not close the application's listeners; draining them is the
// application's job. Calling it again does nothing.
func (u *Upgrader) Stop() {
	u.mu.Lock()
	if u.stopped {
		u.mu.Unlock()
		return
	}
	u.stopped = true
	close(u.stopC)
	wait := u.upgrading
	u.mu.Unlock()
	if wait != nil {
		<-wait
	}

	u.mu.Lock()
	final, served := !u.handedOver, u.ready
	if final {
		close(u.exitC)
	}
	u.mu.Unlock()

	// A successor that stops before it was ready leaves the inherited
	// socket files alone: its predecessor still serves them.
	u.reg.closeAll(final, final && served)
	u.mu.Lock()
	control := u.control
	u.mu.Unlock()
	if control != nil {
		control.close(final)
	}
	if final && served {
		if err := u.notify.Stopping(); err != nil {
			u.log.Warn("telling systemd we stop", "err", err)
		}
	}
	if f := u.takeS6Ready(); f != nil {
		f.Close() // never ready: s6 is not told so
	}
	u.mu.Lock()
	reexec := u.reexec && !final
	u.mu.Unlock()
	if reexec {
		u.execInPlace() // returns only if it failed
	}
	if final && u.pid.path != "" {
		u.pid.removeIfOurs(os.Getpid())
	}
	u.log.Info("stopped", "generation", u.gen, "final", final)
}
