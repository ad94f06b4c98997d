//go:build !linux

package main

import (
	"fmt"
	"os"
	"syscall"
	"time"
)

// generations, where there is no child subreaper: generations orphaned by
// an upgrade go to init, and "stop" waits for the serving one to be gone.
type generations struct{}

func newGenerations() *generations { return &generations{} }

// spawn starts the first generation.
func (g *generations) spawn(path string, argv []string, attr *os.ProcAttr) (*os.Process, error) {
	return os.StartProcess(path, argv, attr)
}

func (g *generations) alive(pid int) bool {
	p, err := os.FindProcess(pid)
	return err == nil && p.Signal(syscall.Signal(0)) == nil
}

// stopPoll is how often wait looks again: nothing tells a process when one
// that is not its child exits; 20ms keeps "baton demo" quick to end.
const stopPoll = 20 * time.Millisecond

func (g *generations) wait(pid int, d time.Duration) error {
	deadline := time.Now().Add(d)
	for g.alive(pid) {
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d still ran %v after SIGTERM", pid, d)
		}
		time.Sleep(stopPoll)
	}
	return nil
}
