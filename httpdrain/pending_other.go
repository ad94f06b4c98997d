//go:build !linux && !darwin && !dragonfly && !freebsd && !netbsd && !openbsd

package httpdrain

import "errors"

// inq cannot look into a socket's receive buffer here, so an idle
// connection is closed after IdleGrace without the check.
func inq(fd uintptr) (int, error) {
	return 0, errors.ErrUnsupported
}
