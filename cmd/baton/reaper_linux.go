package main

import (
	"fmt"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/reaper"
	"golang.org/x/sys/unix"
)

// generations collects the demo server's generations with
// internal/reaper. "baton demo" becomes a child subreaper, so a
// generation orphaned when its predecessor exits is reparented here rather
// than to init: every one of them is reaped, and "stop" can wait until
// none is left.
type generations struct {
	r      reaper.Reaper
	mu     sync.Mutex
	exited map[int]bool
}

func newGenerations() *generations {
	reaper.BecomeSubreaper()
	g := &generations{exited: map[int]bool{}}
	// The generations after the first are orphans to the reaper: nobody
	// here started them.
	g.r.OnOrphan = func(pid int, _ syscall.WaitStatus) { g.note(pid) }
	return g
}

func (g *generations) note(pid int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.exited[pid] = true
}

// spawn starts the first generation, and reaping.
func (g *generations) spawn(path string, argv []string, attr *os.ProcAttr) (*os.Process, error) {
	var p *os.Process
	_, err := g.r.Spawn(func() (int, error) {
		var err error
		if p, err = os.StartProcess(path, argv, attr); err != nil {
			return 0, err
		}
		return p.Pid, nil
	}, func(syscall.WaitStatus) { g.note(p.Pid) })
	g.r.Start()
	return p, err
}

func (g *generations) alive(pid int) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.exited[pid] && procfs.Alive(pid)
}

// wait waits up to d until every child has exited and been reaped. Any left
// then are killed, and named in the error.
func (g *generations) wait(_ int, d time.Duration) error {
	left, _ := reaper.WaitChildren(d)
	for _, pid := range left {
		unix.Kill(pid, unix.SIGKILL)
	}
	if len(left) == 0 {
		return nil
	}
	return fmt.Errorf("generations %v still ran %v after SIGTERM and were killed", left, d)
}
