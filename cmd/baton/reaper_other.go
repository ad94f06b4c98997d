//go:build !linux

package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// reaper, where there is no child subreaper: generations orphaned by an
// upgrade go to init, and "stop" waits for the serving one to be gone.
type reaper struct{}

func newReaper() *reaper { return &reaper{} }

func (r *reaper) start() {}

func (r *reaper) alive(pid int) bool {
	p, err := os.FindProcess(pid)
	return err == nil && p.Signal(syscall.Signal(0)) == nil
}

func (r *reaper) wait(pid int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for r.alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still ran %v after SIGTERM", pid, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}
