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

	v, ok := os.LookupEnv(envHandoff)
	if !ok {
		return u, nil
	}
	// Scrub it at once: the variable is for this process only, never for
	// anything it starts (a successor gets a fresh one).
	os.Unsetenv(envHandoff)
	fd, ppid, err := parseHandoffEnv(v)
	if err != nil {
		return nil, err
	}
	if ppid != os.Getppid() {
		// A stray copy inherited by a grandchild, or the incumbent died
		// before we got here: either way there is nobody to take over from.
		u.log.Warn("ignoring handoff from a process that is not our parent", "ppid", ppid)
		return u, nil
	}
	p, entries, err := adoptParent(fd, ppid, opts.upgradeTimeout())
	if err != nil {
		return nil, err
	}
	u.parent, u.gen = p, p.generation
	u.reg.inherit(entries)
	u.log.Info("took over from predecessor", "generation", u.gen, "predecessor", ppid, "fds", len(entries))
	return u, nil
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
	if tmp != "" {
		if err := u.pid.commit(tmp); err != nil {
			return err
		}
	}
	u.mu.Lock()
	u.ready = true
	u.mu.Unlock()
	u.log.Info("ready", "generation", u.gen, "pid", os.Getpid())
	return nil
}

// Upgrade starts a successor from the executable chosen by
// Options.Executable, hands it every registered descriptor and waits until
// it is ready. It returns nil once the successor is ready; Exit is then
// closed and this generation should drain and exit. On failure the
// successor is killed and reaped, this generation keeps serving, and the
// error says why (a *ChildError: exit status, signal, timeout, refused
// handoff). At most one upgrade runs at a time: a concurrent call returns
// ErrUpgradeInProgress.
func (u *Upgrader) Upgrade() error {
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

	start := time.Now()
	c, err := u.upgrade()

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
		return err
	}
	u.log.Info("upgrade done; draining", "generation", u.gen, "successor", c.proc.Pid, "took", time.Since(start).Round(time.Microsecond))
	return nil
}

func (u *Upgrader) upgrade() (*child, error) {
	path, err := u.opts.executable()
	if err != nil {
		return nil, &ChildError{Path: path, Err: err}
	}
	timeout := u.opts.upgradeTimeout()
	metas, fds := u.reg.snapshot()
	u.log.Info("upgrading", "generation", u.gen, "executable", path, "fds", len(fds))
	c, err := startChild(path, u.gen+1, metas, fds, time.Now().Add(timeout))
	if err != nil {
		return nil, &ChildError{Path: path, Err: err}
	}
	fail := func(err error) (*child, error) {
		c.kill()
		return nil, &ChildError{PID: c.proc.Pid, Path: path, Err: err}
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
		if err := c.ack(); err != nil {
			return fail(fmt.Errorf("acknowledging ready: %w", err))
		}
		return c, nil
	case <-c.exited:
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
	if final && u.pid.path != "" {
		u.pid.removeIfOurs(os.Getpid())
	}
	u.log.Info("stopped", "generation", u.gen, "final", final)
}
