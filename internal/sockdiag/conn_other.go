//go:build !linux

package sockdiag

import (
	"errors"
	"net/netip"
)

// ErrNotSupported: sock_diag is Linux's.
var ErrNotSupported = errors.New("sockdiag: not supported on this system")

func TCP(States) ([]TCPSocket, error) { return nil, ErrNotSupported }

func LookupTCP(local, remote netip.AddrPort) (TCPSocket, error) {
	return TCPSocket{}, ErrNotSupported
}

func UnixInodes() (map[uint64]bool, error) { return nil, ErrNotSupported }
