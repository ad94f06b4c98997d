package reaper

import (
	"errors"
	"io/fs"
	"os"

	"github.com/batonhq/baton/internal/procfs"
	"golang.org/x/sys/unix"
)

// BecomeSubreaper makes this process the child subreaper of its
// descendants (PR_SET_CHILD_SUBREAPER): one orphaned below it is
// reparented here rather than to PID 1, where a Reaper reaps it and a
// caller can wait for it. As PID 1 there is nothing to do: orphans come
// here anyway.
func BecomeSubreaper() error {
	if os.Getpid() == 1 {
		return nil
	}
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return os.NewSyscallError("prctl(PR_SET_CHILD_SUBREAPER)", err)
	}
	return nil
}

// running reports whether pid runs: a zombie has exited (kill(pid, 0)
// would succeed on it).
func running(pid int) bool { return procfs.Alive(pid) }

// exists reports whether pid is in the process table, zombie or not.
func exists(pid int) bool {
	_, err := procfs.ReadStat(pid)
	return !errors.Is(err, fs.ErrNotExist)
}

// Children returns the pids whose parent is this process, zombies (not
// reaped yet) included.
func Children() ([]int, error) {
	kids, err := procfs.Children(os.Getpid())
	if err != nil {
		return nil, err
	}
	pids := make([]int, len(kids))
	for i, k := range kids {
		pids[i] = k.PID
	}
	return pids, nil
}
