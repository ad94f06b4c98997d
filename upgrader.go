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

	"github.com/batonhq/baton/internal/ownersock"
	"github.com/batonhq/baton/systemd"
)

// Upgrader hands this generation's sockets to a successor and tells the
// application when to drain. Create it with New, once per process.
type Upgrader struct {
	// The core is the same for every topology: a registry of descriptors
	// (fds.go), what this generation knows of its predecessor (parent.go)
	// and of a successor (child.go), and the handover between them
	// (handover, below). What differs is who starts the successor and how
	// it reaches us: Upgrade starts it as our child; under Options.Control
	// a new instance started by a supervisor dials the control socket
	// (control.go), and a supervised restart bridges the gap with an
	// interim generation (interim.go). The service managers that hear of
	// it — systemd, s6 — are told through mgr (systemd.go).
	opts   Options
	log    *slog.Logger
	reg    *registry
	parent *parent // nil for a first generation
	gen    int
	pid    pidFile // path "" when there is no PID file
	mgr    managers
	ctl    *controlRestart // nil unless Options.Control is set
	// handed is the Handed listeners, which the link from the parent,
	// if any, delivers to.
	handed *handedSet

	// hupPending: a SIGHUP came before Ready and waits for it
	// (upgradeWhenReady).
	hupPending atomic.Bool
	// hurry is closed when this draining generation must stop at once
	// (draining.go).
	hurry hurry
	// stats: the service's upgrade counts, for Status (status.go).
	stats stats

	// The lifecycle, as events: each channel is closed exactly once.
	readyC chan struct{} // by Ready, under mu, once this generation serves
	// settledC is closed, under mu, once this generation is named — PID
	// file, control socket, service managers: at Ready, or for a
	// successor on probation once it passed (settle).
	settledC chan struct{}
	exitC    chan struct{} // when this generation must drain and go
	stopC    chan struct{} // by Stop

	readyMu sync.Mutex // serialises Ready

	mu         sync.Mutex
	upgrading  chan struct{} // non-nil while an upgrade runs; closed when it ends
	handedOver bool          // a successor took over; exitC is closed
	stopped    bool
	// state is what SetState set, for the next successor; replaced,
	// never changed in place.
	state map[string][]byte
	// successor is kept for the life of the process: its handoff socket
	// stays open until we exit, so the successor's WaitForParent sees
	// exactly that, and its reaper goroutine collects it if it ever exits
	// while we still run.
	successor *child

	// relay carries datagrams to and from the neighbouring generations
	// (relay.go); made on first use.
	relayOnce sync.Once
	relay     *relay
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
	if opts.Probation < 0 || opts.Probation > MaxProbation {
		return nil, fmt.Errorf("baton: Options.Probation %v out of range (0 to %v)", opts.Probation, MaxProbation)
	}
	u := &Upgrader{
		opts:     opts,
		log:      opts.Logger,
		reg:      &registry{},
		gen:      1,
		readyC:   make(chan struct{}),
		settledC: make(chan struct{}),
		exitC:    make(chan struct{}),
		stopC:    make(chan struct{}),
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	u.handed = newHandedSet(u.log)
	if opts.PIDFile != "" {
		u.pid = pidFile{path: absFromInitial(opts.PIDFile)}
	}
	n, err := systemd.NewNotifier()
	if err != nil {
		// Not fatal: the service can serve, systemd just won't hear of it.
		u.log.Warn("not notifying the service manager", "err", err)
	}
	u.mgr.notify = n
	u.ctl = newControlRestart(opts.Control)

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
			p, entries, err := adoptParent(fd, ppid, opts.upgradeTimeout(), u.handed)
			if err != nil {
				return nil, err
			}
			u.parent, u.gen, u.mgr.byUpgrade = p, p.generation, true
			p.relay.Store(u.relays())
			u.reg.inherit(entries)
			if err := u.preflight(); err != nil {
				return nil, err
			}
			u.log.Info("took over from predecessor", "generation", u.gen, "predecessor", ppid, "fds", len(entries))
			u.inheritStats()
			return u, nil
		}
	}

	// A first start: the sockets may come from systemd, or from an
	// instance that still serves, through the control socket.
	if err := u.adoptActivated(); err != nil {
		return nil, err
	}
	if sv := findSupervisor(); sv != "" {
		if u.mgr.s6ready, err = sv.s6NotificationFd(); err != nil {
			return nil, err
		}
	}
	if u.ctl != nil {
		if err := u.takeOver(); err != nil {
			u.reg.closeAll(false, false)
			return nil, err
		}
	}
	if err := u.preflight(); err != nil {
		return nil, err
	}
	u.inheritStats()
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
	if err == nil && u.ctl != nil {
		err = u.ctl.check()
	}
	if err == nil {
		return nil
	}
	if u.parent != nil {
		u.parent.abort(err.Error())
		u.parent.conn.Close()
	}
	if u.mgr.s6ready != nil {
		u.mgr.s6ready.Close() // never ready: s6 is not told so
	}
	u.reg.closeAll(false, false)
	return err
}

// Generation is 1 for a process not started by Upgrade, and one more than
// its predecessor's otherwise.
func (u *Upgrader) Generation() int { return u.gen }

// HasParent reports whether this process took over from a predecessor.
func (u *Upgrader) HasParent() bool { return u.parent != nil }

// Exit is closed when this generation must stop accepting, drain and exit:
// after a successful Upgrade, or after Stop.
func (u *Upgrader) Exit() <-chan struct{} { return u.exitC }

// HandedOver reports whether a successor took over from this generation.
// Once Exit is closed it says why: true, a successor serves and this
// generation drains beside it; false, Stop closed it, and nobody else
// serves (a process that still reads a shared socket, say, goes on
// reading it through its drain).
func (u *Upgrader) HandedOver() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.handedOver
}

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
//
// A successor whose predecessor has a probation (Options.Probation)
// returns from Ready once acknowledged and serves, but writes the PID
// file, puts the control socket in place and tells s6 only once the
// predecessor says the probation passed, or is gone: until then the
// predecessor may still be the one that serves on.
func (u *Upgrader) Ready() error {
	u.readyMu.Lock()
	defer u.readyMu.Unlock()
	u.mu.Lock()
	switch {
	case u.stopped:
		u.mu.Unlock()
		return ErrStopped
	case u.isReady():
		u.mu.Unlock()
		return nil
	}
	u.mu.Unlock()

	for _, m := range u.reg.closeUnclaimed() {
		u.log.Info("closed an inherited descriptor nobody asked for", "name", m.Name, "network", m.Network, "address", m.Actual)
	}

	// Prepare the PID file and bind the control socket before the
	// predecessor drains, so an unwritable directory fails this
	// generation, not the service.
	var tmp string
	if u.pid.path != "" {
		var err error
		if tmp, err = u.pid.prepare(os.Getpid()); err != nil {
			u.refuse(err)
			return err
		}
	}
	// The relay socket too: the ready frame carries one end.
	var theirs *os.File
	if u.parent != nil {
		ours, f, err := relayPair()
		if err != nil {
			if tmp != "" {
				os.Remove(tmp)
			}
			err = fmt.Errorf("baton: making the relay socket: %w", err)
			u.refuse(err)
			return err
		}
		theirs = f
		// Ours is read from now on: whatever the predecessor relays
		// once it has the other end waits in the socket till then.
		u.relays().attach(toOlder, ours)
	}
	var control *ownersock.Listener
	if u.ctl != nil {
		var err error
		if control, err = u.ctl.listen(); err != nil {
			if tmp != "" {
				os.Remove(tmp)
			}
			if theirs != nil {
				theirs.Close()
			}
			u.refuse(err)
			return err
		}
	}
	if u.parent != nil {
		err := u.parent.ready(u.opts.upgradeTimeout(), theirs)
		theirs.Close()
		if err != nil {
			// The predecessor is stopped or wedged: serving beats waiting
			// for it. Its own timeout kills nobody once we are on our own.
			u.log.Warn("serving without the predecessor's acknowledgement", "predecessor", u.parent.pid, "err", err)
		}
	}
	if u.parent != nil && u.parent.onProbation() {
		// Nothing of this generation's names stays beside the real ones
		// through the window: killed in it, it would leave its temporary
		// PID file and socket behind. Both directories took them just
		// now; awaitProbation makes them again once it passed.
		if tmp != "" {
			os.Remove(tmp)
		}
		if control != nil {
			control.Close(false)
		}
		u.mu.Lock()
		close(u.readyC)
		u.mu.Unlock()
		u.log.Info("ready, on probation: serving beside the predecessor", "generation", u.gen, "pid", os.Getpid(), "probation", u.parent.probation)
		go u.awaitProbation()
		return nil
	}
	return u.settle(tmp, control, true)
}

// awaitProbation names this generation (settle) once the predecessor
// says its probation passed, or is gone (nobody else serves then); not
// if it stops first: the predecessor then serves on, still named. Too
// late to refuse anything, a PID file or control socket that cannot be
// made now is logged, and this generation serves without it.
//
// A predecessor that says nothing for the window plus UpgradeTimeout is
// stopped (SIGSTOP) or wedged: this generation, which serves anyway, names
// itself then rather than leave the PID file and the control socket to a
// process that may never answer again.
func (u *Upgrader) awaitProbation() {
	limit := u.parent.window() + u.opts.upgradeTimeout()
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-u.parent.passed:
		u.log.Info("probation passed", "generation", u.gen)
	case <-u.parent.gone:
		u.log.Warn("the predecessor is gone during the probation: serving alone", "generation", u.gen, "predecessor", u.parent.pid)
	case <-t.C:
		u.log.Warn("the predecessor said nothing since the probation should have ended: naming this generation", "generation", u.gen, "predecessor", u.parent.pid, "waited", limit)
	case <-u.stopC:
		return
	}
	var tmp string
	if u.pid.path != "" {
		var err error
		if tmp, err = u.pid.prepare(os.Getpid()); err != nil {
			u.log.Error("after the probation: the PID file cannot name this generation", "generation", u.gen, "err", err)
		}
	}
	var control *ownersock.Listener
	if u.ctl != nil {
		var err error
		if control, err = u.ctl.listen(); err != nil {
			u.log.Error("control socket: no new instance can take over from this generation", "control", u.opts.Control, "err", err)
		}
	}
	if err := u.settle(tmp, control, false); err != nil && !errors.Is(err, ErrStopped) {
		u.log.Error("after the probation", "generation", u.gen, "err", err)
	}
}

// settle names this generation: it renames the PID file prepared as tmp
// into place, puts the control socket in place and closes settledC (and
// readyC, if ready, in the same step), then tells the predecessor and the
// service managers. After a probation it does nothing but drop tmp and
// control if this generation was stopped meanwhile.
func (u *Upgrader) settle(tmp string, control *ownersock.Listener, ready bool) error {
	// The PID file and the control socket name this generation, and it
	// is ready, in one step: whoever finds it through either (kill -HUP
	// $(cat pidfile), a supervisor's new instance) must find it ready,
	// or the request would fail with ErrNotReady.
	u.mu.Lock()
	if !ready && u.stopped {
		u.mu.Unlock()
		if tmp != "" {
			os.Remove(tmp)
		}
		if control != nil {
			control.Close(false)
		}
		return ErrStopped
	}
	if tmp != "" {
		if err := u.pid.commit(tmp); err != nil {
			u.mu.Unlock()
			if control != nil {
				control.Close(false)
			}
			return err
		}
	}
	if control != nil {
		if err := control.Commit(); err != nil {
			// Too late to fail: the predecessor drains. Serve on; only
			// the next supervised restart will not be seamless.
			u.log.Error("control socket: no new instance can take over from this generation", "control", u.opts.Control, "err", err)
			control = nil
		}
		u.ctl.server = control
	}
	if ready {
		close(u.readyC)
	}
	close(u.settledC)
	u.mu.Unlock()
	if u.parent != nil {
		// A successor counts the handover that made it once it names
		// the service; through the control socket, it was a restart.
		u.countTakeover(!u.mgr.byUpgrade)
	}
	if u.parent != nil {
		// Whoever waits for the PID file or the control socket to name
		// us — a predecessor about to re-execute in place — hears it
		// now rather than looking again and again.
		u.parent.serving()
	}
	if control != nil {
		go u.serveControl(control)
	}
	u.log.Info("ready", "generation", u.gen, "pid", os.Getpid())
	u.announceReady()
	if u.ctl != nil && u.ctl.interim {
		go u.watchInterim()
	}
	return nil
}

// isReady reports whether Ready has succeeded.
func (u *Upgrader) isReady() bool {
	select {
	case <-u.readyC:
		return true
	default:
		return false
	}
}

// isSettled reports whether this generation is ready and named: not on
// probation.
func (u *Upgrader) isSettled() bool {
	select {
	case <-u.settledC:
		return true
	default:
		return false
	}
}

// whenReady runs f once this generation is ready and its probation, if
// any, passed, unless it stops, hands over or is not ready within
// UpgradeTimeout first (its predecessor, if any, kills it then anyway),
// or not off probation within the probation and UpgradeTimeout more;
// late then names what is dropped. It is how a request that came too
// early — a SIGHUP, a supervisor's restart — is carried out: on the
// event, not by looking again and again.
func (u *Upgrader) whenReady(late string, f func()) {
	timeout := u.opts.upgradeTimeout()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-u.readyC:
	case <-u.exitC:
		return
	case <-u.stopC:
		return
	case <-t.C:
		u.log.Warn(late+": asked before ready, and still not ready; dropping the request", "waited", timeout)
		return
	}
	if !u.isSettled() {
		// On probation: its end is the predecessor's to say, within
		// the window; UpgradeTimeout more is for a slow predecessor.
		wait := u.parent.window() + timeout
		u.log.Info(late+": asked during this generation's probation; carrying it out once the probation passed", "generation", u.gen)
		t.Reset(wait)
		select {
		case <-u.settledC:
		case <-u.exitC:
			return
		case <-u.stopC:
			return
		case <-t.C:
			u.log.Warn(late+": asked during the probation, which has not ended; dropping the request", "waited", wait)
			return
		}
	}
	f()
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
	// A successor on probation has not served as the service yet: its
	// predecessor serves on, still named, with the socket files.
	final, served := !u.handedOver, u.isSettled()
	if final {
		close(u.exitC)
	}
	var control *ownersock.Listener
	if u.ctl != nil {
		control = u.ctl.server
	}
	u.mu.Unlock()

	if !final {
		u.spliceRelay()
	}
	// A successor that stops before it was ready leaves the inherited
	// socket files alone: its predecessor still serves them.
	u.reg.closeAll(final, final && served)
	if control != nil {
		control.Close(final)
	}
	if final && served {
		if err := u.mgr.notify.Stopping(); err != nil {
			u.log.Warn("telling systemd we stop", "err", err)
		}
	}
	if f := u.takeS6Ready(); f != nil {
		f.Close() // never ready: s6 is not told so
	}
	if final && u.pid.path != "" {
		u.pid.removeIfOurs(os.Getpid())
	}
	u.log.Info("stopped", "generation", u.gen, "final", final)
}
