package httpdrain

import (
	"crypto/tls"
	"net"
	"syscall"
)

// pendingBytes reports how many received bytes wait unread in c's socket
// buffer, and whether it could tell at all (it cannot on some systems, or
// for a connection with no file descriptor).
func pendingBytes(c net.Conn) (n int, ok bool) {
	var sc syscall.Conn
	switch c := c.(type) {
	case *tls.Conn:
		// Encrypted bytes count as well: they are the next request.
		sc, _ = c.NetConn().(syscall.Conn)
	case *conn:
		sc = c.sc // wrapped for a Handoff
	case syscall.Conn:
		sc = c
	}
	if sc == nil {
		return 0, false
	}
	// SyscallConn, not File: File dups the descriptor and, through Fd,
	// would switch the shared open file description to blocking mode.
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) { n, ierr = inq(fd) }); err != nil || ierr != nil {
		return 0, false
	}
	return n, true
}
