package systemd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// supported says whether this system speaks systemd's protocols.
const supported = true

// send delivers msg, with fds attached, as one datagram to addr.
//
// Each message goes out on a socket of its own, as libsystemd does: there
// is no state to share between goroutines and no descriptor to leak into a
// child. The socket is blocking; a datagram to a Unix socket either fits in
// the receiver's queue or waits for room, and systemd reads its queue
// promptly.
func send(addr string, msg []byte, fds []int) error {
	if err := checkNotifySocket(addr); err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return os.NewSyscallError("socket", err)
	}
	defer unix.Close(fd)
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	// The kernel attaches our credentials (SO_PASSCRED on systemd's side):
	// systemd learns the sending pid from them, never from the message.
	sa := &unix.SockaddrUnix{Name: addr} // a leading '@' means abstract
	for {
		err = unix.Sendmsg(fd, msg, oob, sa, unix.MSG_NOSIGNAL)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return os.NewSyscallError("sendmsg", err)
	}
	return nil
}

// barrier sends BARRIER=1 with the write end of a pipe and waits until
// every copy of that end is closed.
func barrier(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	// os.Pipe: both ends close-on-exec, and the read end is registered with
	// the runtime poller, so the wait below is a deadline on a Read rather
	// than a thread blocked in poll(2).
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	err = withFd(w, func(fd int) error {
		msg, err := buildMessage([]string{"BARRIER=1"})
		if err != nil {
			return err
		}
		return send(addr, msg, []int{fd})
	})
	// Our copy of the write end must go before we wait: EOF comes only
	// when no copy is left open.
	w.Close()
	if err != nil {
		return err
	}
	if err := r.SetReadDeadline(deadline); err != nil {
		return err
	}
	var buf [64]byte
	for {
		_, err := r.Read(buf[:])
		switch {
		case err == io.EOF:
			return nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Errorf("the service manager did not answer within %v: %w", timeout, os.ErrDeadlineExceeded)
		case err != nil:
			return err
		}
		// Nobody should write to the pipe; whatever was written is
		// ignored and the wait goes on until EOF.
	}
}

// withFd calls f with the descriptor of a file this package created and
// owns alone. It goes through SyscallConn rather than Fd, which would put
// the file in blocking mode.
func withFd(file *os.File, f func(fd int) error) error {
	rc, err := file.SyscallConn()
	if err != nil {
		return err
	}
	var ferr error
	if err := rc.Control(func(fd uintptr) { ferr = f(int(fd)) }); err != nil {
		return err
	}
	return ferr
}

// monotonicUsec returns CLOCK_MONOTONIC in microseconds, the clock systemd
// uses for MONOTONIC_USEC=.
func monotonicUsec() (uint64, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("systemd: %w", os.NewSyscallError("clock_gettime", err))
	}
	return uint64(ts.Sec)*1e6 + uint64(ts.Nsec)/1e3, nil
}
