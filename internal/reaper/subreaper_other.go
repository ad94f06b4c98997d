//go:build unix && !linux

package reaper

import "syscall"

// Without a child subreaper, orphans go to init.
func BecomeSubreaper() error { return ErrNotSupported }

// running, without /proc to tell a zombie: kill(pid, 0) succeeds on one,
// so a zombie of another parent counts as running until it is reaped.
func running(pid int) bool { return syscall.Kill(pid, 0) == nil }

func Children() ([]int, error) { return nil, ErrNotSupported }

// exists: kill(pid, 0) fails with ESRCH only once pid is reaped.
func exists(pid int) bool { return syscall.Kill(pid, 0) != syscall.ESRCH }
