package baton

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/batonhq/baton/internal/ownersock"
)

// canDetach reports whether a successor can be started as a sibling rather
// than a child (see detachedAttr). The init of a PID namespace cannot do
// it: the kernel refuses CLONE_PARENT there, and nothing above it could
// reap the successor anyway.
func canDetach() bool { return os.Getpid() != 1 }

// detachedAttr makes os.StartProcess start the successor as a child of our
// own parent (CLONE_PARENT), not of us. Under systemd that parent is the
// service manager, so the successor, once named MAINPID, is a main process
// systemd forked as far as it can tell: it waits for it on stop instead of
// following SIGTERM with SIGKILL at once. Under daemontools, runit or s6
// it is the supervisor, which reaps any child it does not track.
//
// *pidfd receives a pidfd for the successor: we cannot wait(2) for a
// process that is not our child, but we can poll its pidfd.
func detachedAttr(pidfd *int) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Cloneflags: syscall.CLONE_PARENT, PidFD: pidfd}
}

// pidfdOpen returns a pidfd for pid, for a process we did not start.
func pidfdOpen(pid int) (int, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return -1, os.NewSyscallError("pidfd_open", err)
	}
	unix.CloseOnExec(fd)
	return fd, nil
}

// watchPidfd closes the returned channel when the process behind pidfd has
// exited. It takes ownership of pidfd. The wait goes through the runtime's
// poller (a pidfd becomes readable when its process exits), so a successor
// that lives for months costs no thread.
func watchPidfd(pidfd int) (<-chan struct{}, error) {
	if err := unix.SetNonblock(pidfd, true); err != nil {
		unix.Close(pidfd)
		return nil, os.NewSyscallError("fcntl", err)
	}
	f := os.NewFile(uintptr(pidfd), "pidfd")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer f.Close()
		err := rc.Read(func(fd uintptr) bool {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, err := unix.Poll(fds, 0)
			return n > 0 || err != nil && !errors.Is(err, unix.EINTR)
		})
		if err != nil {
			// The poller cannot watch it: fall back to a blocking poll.
			for {
				fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
				if _, err := unix.Poll(fds, -1); !errors.Is(err, unix.EINTR) {
					return
				}
			}
		}
	}()
	return done, nil
}

// handoffFrom reports whether the handoff socket at fd was made by process
// ppid. A successor started detached is not ppid's child, so its parent
// tells nothing; the socket's credentials do.
func handoffFrom(fd, ppid int) bool {
	if os.Getppid() == ppid {
		return true
	}
	cred, err := ownersock.PeerCredFD(fd)
	return err == nil && cred.PID == ppid && cred.UID == os.Geteuid()
}

// watchProcess closes the returned channel when pid has exited. It takes
// ownership of pidfd, or opens one if pidfd is -1.
func watchProcess(pid, pidfd int) (<-chan struct{}, error) {
	if pidfd < 0 {
		var err error
		if pidfd, err = pidfdOpen(pid); err != nil {
			return nil, fmt.Errorf("watching pid %d: %w", pid, err)
		}
	}
	return watchPidfd(pidfd)
}

// relaySockType keeps each relayed datagram a message of its own, and
// ends with EOF when the neighbour exits.
const relaySockType = unix.SOCK_SEQPACKET
