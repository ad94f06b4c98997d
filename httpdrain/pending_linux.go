package httpdrain

import "golang.org/x/sys/unix"

// inq returns the number of unread bytes in a socket's receive buffer.
func inq(fd uintptr) (int, error) {
	return unix.IoctlGetInt(int(fd), unix.SIOCINQ)
}
