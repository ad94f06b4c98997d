//go:build linux || darwin

package loadgen

import (
	"os"

	"golang.org/x/sys/unix"
)

// IsTerminal reports whether f is a terminal, such as a stdout that is not
// redirected.
func IsTerminal(f *os.File) bool {
	return isTerminal(f, getTermios)
}

// isTerminal asks for f's terminal attributes with the ioctl req. It goes
// through SyscallConn rather than Fd because Fd switches f to blocking mode
// for good.
func isTerminal(f *os.File, req uint) bool {
	rc, err := f.SyscallConn()
	if err != nil {
		return false
	}
	var ioErr error
	err = rc.Control(func(fd uintptr) {
		_, ioErr = unix.IoctlGetTermios(int(fd), req)
	})
	return err == nil && ioErr == nil
}
