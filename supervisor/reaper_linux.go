package supervisor

import (
	"errors"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// reaper is the one place the master waits for children: wait4(-1) reaps
// every child, the workers it started and the orphans reparented to it
// (as PID 1 or as a child subreaper) alike. No other code may wait, or it
// would steal a worker's exit status; syscall.StartProcess is used rather
// than os/exec for that reason too.
type reaper struct {
	log     *slog.Logger
	mu      sync.Mutex
	tracked map[int]func(syscall.WaitStatus)
	orphans int
	sigs    chan os.Signal
	quit    chan struct{}
	done    chan struct{}
}

func newReaper(log *slog.Logger) *reaper {
	r := &reaper{
		log:     log,
		tracked: map[int]func(syscall.WaitStatus){},
		sigs:    make(chan os.Signal, 1),
		quit:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	return r
}

// start starts reaping. Children adopted before (adopt) are known by then.
func (r *reaper) start() {
	// SIGCHLD only wakes the loop up; a tick catches what a coalesced
	// signal could hide.
	signal.Notify(r.sigs, syscall.SIGCHLD)
	go r.run()
}

// adopt tracks a child started by an earlier image of this process (see
// Master.ExecMaster). Call it before start.
func (r *reaper) adopt(pid int, onExit func(syscall.WaitStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tracked[pid] = onExit
}

// spawn calls start and tracks the child it returns, so that its exit is
// passed to onExit. The lock spans both: a child that exits at once is
// reaped by run, which then waits here until it is known.
func (r *reaper) spawn(start func() (int, error), onExit func(syscall.WaitStatus)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, err
	}
	r.tracked[pid] = onExit
	return pid, nil
}

// reapTick is how often the reaper looks for exits without a SIGCHLD:
// signals coalesce, and one delivered while reapAll was past a child is
// folded into the next; a second is soon enough for a rare miss, and
// costs nothing.
const reapTick = time.Second

func (r *reaper) run() {
	defer close(r.done)
	tick := time.NewTicker(reapTick)
	defer tick.Stop()
	for {
		r.reapAll()
		select {
		case <-r.sigs:
		case <-tick.C:
		case <-r.quit:
			r.reapAll()
			return
		}
	}
}

func (r *reaper) reapAll() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if pid <= 0 {
			return
		}
		r.mu.Lock()
		f := r.tracked[pid]
		delete(r.tracked, pid)
		if f == nil {
			r.orphans++
		}
		r.mu.Unlock()
		if f != nil {
			f(ws)
		} else if r.log != nil {
			r.log.Debug("reaped an orphan", "pid", pid, "status", describe(ws))
		}
	}
}

func (r *reaper) reaped() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orphans
}

func (r *reaper) stop() {
	signal.Stop(r.sigs)
	close(r.quit)
	<-r.done
}

// becomeSubreaper makes orphans of our descendants our children, so they
// are reaped here; as PID 1 they are anyway.
func becomeSubreaper() error {
	if os.Getpid() == 1 {
		return nil
	}
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
}

// How the descendants left behind by the workers (daemonised children,
// reparented here) are ended on the final stop: SIGTERM, then SIGKILL
// after orphanTermGrace (or the drain timeout, if shorter: they get no
// more than a worker would), then orphanKillWait for the kernel to end
// them. They are not this process's children by its own doing, and the
// only event of their exit is SIGCHLD to the reaper, which does not say
// whose: so the list is looked at again every orphanPoll.
const (
	orphanTermGrace = 5 * time.Second
	orphanKillWait  = 2 * time.Second
	orphanPoll      = 20 * time.Millisecond
)

// reapOrphans ends what the workers left behind: SIGTERM, then SIGKILL
// after a while.
func (m *Master) reapOrphans() {
	deadline := time.Now().Add(min(m.cfg.DrainTimeout, orphanTermGrace))
	sig := unix.SIGTERM
	for {
		kids := children(os.Getpid())
		if len(kids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if sig == unix.SIGKILL {
				m.log.Warn("processes left after SIGKILL", "pids", kids)
				return
			}
			sig, deadline = unix.SIGKILL, time.Now().Add(orphanKillWait)
			m.log.Warn("killing what the workers left behind", "pids", kids)
			for _, p := range kids {
				unix.Kill(p, sig)
			}
		} else if sig == unix.SIGTERM {
			for _, p := range kids {
				unix.Kill(p, sig)
			}
			sig = 0
		}
		m.reaper.reapAll()
		time.Sleep(orphanPoll)
	}
}
