package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// reaper collects the demo server's generations. "baton demo" becomes a
// child subreaper, so a generation orphaned when its predecessor exits is
// reparented here rather than to init: every one of them is reaped, and
// "stop" can wait until none is left.
type reaper struct {
	mu     sync.Mutex
	exited map[int]bool
	none   bool // the last wait4 found no child at all
}

func newReaper() *reaper {
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	return &reaper{exited: map[int]bool{}}
}

func (r *reaper) start() {
	go func() {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, 0, nil)
			r.mu.Lock()
			if pid > 0 {
				r.exited[pid] = true
			}
			r.none = errors.Is(err, unix.ECHILD)
			r.mu.Unlock()
			if errors.Is(err, unix.ECHILD) {
				time.Sleep(20 * time.Millisecond)
			}
		}
	}()
}

func (r *reaper) alive(pid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.exited[pid] && unix.Kill(pid, 0) == nil
}

// wait waits up to d until every child has exited and been reaped. Any left
// then are killed, and named in the error.
func (r *reaper) wait(_ int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		none := r.none && len(children()) == 0
		r.mu.Unlock()
		if none {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	left := children()
	for _, pid := range left {
		unix.Kill(pid, unix.SIGKILL)
	}
	if len(left) == 0 {
		return nil
	}
	return fmt.Errorf("generations %v still ran %v after SIGTERM and were killed", left, d)
}

// children lists the pids whose parent is this process.
func children() []int {
	self := os.Getpid()
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(self) {
			out = append(out, pid)
		}
	}
	return out
}
