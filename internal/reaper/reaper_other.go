//go:build !unix

package reaper

import (
	"syscall"
	"time"
)

// A Reaper reaps every child of this process; off Unix there is no
// wait4, and it does nothing.
type Reaper struct {
	OnOrphan func(pid int, ws syscall.WaitStatus)
}

func (r *Reaper) Track(pid int, onExit func(syscall.WaitStatus)) {}

func (r *Reaper) Spawn(start func() (int, error), onExit func(syscall.WaitStatus)) (int, error) {
	return 0, ErrNotSupported
}

func (r *Reaper) Start() {}

func (r *Reaper) Stop() {}

func (r *Reaper) ReapNow() {}

func (r *Reaper) Orphans() int { return 0 }

func (r *Reaper) AddOrphans(n int) {}

func Await(pid int, d time.Duration) error { return ErrNotSupported }

func AwaitGone(pid int, d time.Duration) error { return ErrNotSupported }

func BecomeSubreaper() error { return ErrNotSupported }

func Children() ([]int, error) { return nil, ErrNotSupported }

func WaitChildren(d time.Duration) ([]int, error) { return nil, ErrNotSupported }
