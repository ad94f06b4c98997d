package baton

import (
	"errors"
	"os"
	"syscall"
)

// macOS has neither CLONE_PARENT nor pidfds: successors are always our
// children, and the control socket is not available.

func canDetach() bool { return false }

var errLinuxOnly = errors.New("baton: only supported on Linux")

func detachedAttr(pidfd *int) *syscall.SysProcAttr { return nil }

func watchProcess(pid, pidfd int) (<-chan struct{}, error) { return nil, errLinuxOnly }

func handoffFrom(fd, ppid int) bool { return os.Getppid() == ppid }

// relaySockType keeps each relayed datagram a message of its own: macOS
// has no SOCK_SEQPACKET for Unix sockets.
const relaySockType = syscall.SOCK_DGRAM
