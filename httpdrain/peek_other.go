//go:build !unix

package httpdrain

import (
	"errors"
	"syscall"
)

// waitUnreadable cannot peek here; Read then reads as net/http asked.
func waitUnreadable(sc syscall.Conn) (eof bool, err error) {
	return false, errors.ErrUnsupported
}
