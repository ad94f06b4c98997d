//go:build unix

package reaper

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// tick bounds how long an exit can go unnoticed when SIGCHLD signals
// coalesce or one arrives between the last wait4 and the next select.
const tick = time.Second

// A Reaper reaps every child of this process. The zero value is ready:
// register children with Spawn or Track, then Start. Stop it before
// exec'ing another image in place (its goroutine would not survive, and
// a wait in flight would take an exit the new image must see); it may be
// started again, with what it tracked.
type Reaper struct {
	// OnOrphan, if not nil, is called, from the reaping goroutine, for
	// every child reaped that nobody registered. Set it before Start.
	OnOrphan func(pid int, ws syscall.WaitStatus)

	mu      sync.Mutex
	tracked map[int]func(syscall.WaitStatus)
	orphans int

	sigs chan os.Signal
	quit chan struct{}
	done chan struct{}
}

// Track registers a child started earlier — by an earlier image of this
// process, before an exec — so that its exit is passed to onExit (which
// may be nil). Call it before Start, or the child may be reaped first
// and counted as an orphan.
func (r *Reaper) Track(pid int, onExit func(syscall.WaitStatus)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trackLocked(pid, onExit)
}

func (r *Reaper) trackLocked(pid int, onExit func(syscall.WaitStatus)) {
	if r.tracked == nil {
		r.tracked = map[int]func(syscall.WaitStatus){}
	}
	if onExit == nil {
		onExit = func(syscall.WaitStatus) {}
	}
	r.tracked[pid] = onExit
}

// Spawn calls start, which starts a child and returns its pid, and
// registers the child so that its exit is passed to onExit (which may be
// nil). The lock spans both: a child that exits at once is reaped by the
// loop, which then waits here until the pid is known.
func (r *Reaper) Spawn(start func() (int, error), onExit func(syscall.WaitStatus)) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	pid, err := start()
	if err != nil {
		return 0, err
	}
	r.trackLocked(pid, onExit)
	return pid, nil
}

// Start starts reaping, in a goroutine of its own.
func (r *Reaper) Start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done != nil {
		return // running
	}
	r.sigs = make(chan os.Signal, 1)
	r.quit = make(chan struct{})
	r.done = make(chan struct{})
	// SIGCHLD only wakes the loop up: Notify does not change how the
	// kernel treats children (ignoring SIGCHLD would make it reap them
	// itself, and wait4 would never see them).
	signal.Notify(r.sigs, syscall.SIGCHLD)
	go r.run(r.sigs, r.quit, r.done)
}

func (r *Reaper) run(sigs <-chan os.Signal, quit, done chan struct{}) {
	defer close(done)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		r.ReapNow()
		select {
		case <-sigs:
		case <-t.C:
		case <-quit:
			r.ReapNow()
			return
		}
	}
}

// Stop stops reaping and returns once the loop has ended; exits after it
// wait until the next Start. Stop without Start does nothing.
func (r *Reaper) Stop() {
	r.mu.Lock()
	sigs, quit, done := r.sigs, r.quit, r.done
	r.sigs, r.quit, r.done = nil, nil, nil
	r.mu.Unlock()
	if done == nil {
		return
	}
	signal.Stop(sigs)
	close(quit)
	<-done
}

// ReapNow reaps every child that has exited, at once, in the caller's
// goroutine: for a caller that must know a child is gone before it goes
// on (a master that just sent SIGKILL and counts what is left).
func (r *Reaper) ReapNow() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if pid <= 0 {
			return // none exited (0), or no child at all (ECHILD)
		}
		r.mu.Lock()
		f := r.tracked[pid]
		delete(r.tracked, pid)
		if f == nil {
			r.orphans++
		}
		onOrphan := r.OnOrphan
		r.mu.Unlock()
		switch {
		case f != nil:
			f(ws)
		case onOrphan != nil:
			onOrphan(pid, ws)
		}
	}
}

// Orphans is how many children were reaped that nobody registered.
func (r *Reaper) Orphans() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.orphans
}

// AddOrphans adds n to the orphan count: the count an earlier image of
// this process had reached before it exec'd this one.
func (r *Reaper) AddOrphans(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.orphans += n
}

// awaitPoll is how often Await looks again. Nothing tells a process when
// a child it does not wait for, or a process that is not its child,
// exits (short of a pidfd, which a pid that may already be gone cannot
// give reliably); 10 ms keeps a test's teardown quick at no cost.
const awaitPoll = 10 * time.Millisecond

// Await waits up to d for pid to exit and, if it is our child, reaps it.
// A process that is not our child is done once it is gone or a zombie
// (its parent reaps it). It returns an error if pid still runs after d;
// the caller decides whether to kill it.
//
// It is for a process that runs no Reaper — a test harness checking the
// generations it caused — and must not be called for a child that
// exec.Cmd.Wait or a Reaper waits for: it would take that exit.
func Await(pid int, d time.Duration) error {
	return await(pid, d, func() bool { return !running(pid) })
}

// AwaitGone is Await that waits until pid has left the process table: a
// zombie that is not ours yet is not done, for if its parent exits
// without reaping it, it becomes ours (we are its subreaper) and only we
// can reap it — which AwaitGone then does.
func AwaitGone(pid int, d time.Duration) error {
	return await(pid, d, func() bool { return !exists(pid) })
}

func await(pid int, d time.Duration, gone func() bool) error {
	deadline := time.Now().Add(d)
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(pid, &ws, syscall.WNOHANG, nil)
		switch {
		case wpid == pid:
			return nil
		case errors.Is(err, syscall.ECHILD) && gone():
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("reaper: pid %d still there after %v", pid, d)
		}
		time.Sleep(awaitPoll)
	}
}

// WaitChildren waits up to d until this process has no child left —
// none running, none waiting to be reaped (a Reaper must run to reap
// them) — and returns the pids still there then: nil when all are gone.
// It looks every awaitPoll: an orphan can be reparented here at any
// moment, and no event says "the last child is gone".
func WaitChildren(d time.Duration) ([]int, error) {
	deadline := time.Now().Add(d)
	for {
		left, err := Children()
		if err != nil || len(left) == 0 || time.Now().After(deadline) {
			return left, err
		}
		time.Sleep(awaitPoll)
	}
}
