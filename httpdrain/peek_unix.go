//go:build unix

package httpdrain

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// waitUnreadable blocks until sc's peer has closed its side (it returns
// true), its read deadline passes or the connection fails (an error),
// without consuming a byte: data that arrives is left in the socket.
func waitUnreadable(sc syscall.Conn) (eof bool, err error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return false, err
	}
	var one [1]byte
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		n, _, e := unix.Recvfrom(int(fd), one[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case errors.Is(e, unix.EAGAIN), errors.Is(e, unix.EINTR):
			return false // wait for readiness
		case e != nil:
			perr = e
			return true
		case n == 0:
			eof = true
			return true
		}
		// Data: leave it, and wait for the next readiness event (the
		// poller is edge-triggered, so this does not spin) or the
		// deadline that ends the background read.
		return false
	})
	if err == nil {
		err = perr
	}
	return eof, err
}
