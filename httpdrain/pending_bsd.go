//go:build darwin || dragonfly || freebsd || netbsd || openbsd

package httpdrain

import "golang.org/x/sys/unix"

// fionread is FIONREAD from <sys/filio.h>, _IOR('f', 127, int), the same on
// Darwin and every BSD; golang.org/x/sys/unix does not export it there.
const fionread = 0x4004667f

// inq returns the number of unread bytes in a socket's receive buffer.
func inq(fd uintptr) (int, error) {
	return unix.IoctlGetInt(int(fd), fionread)
}
