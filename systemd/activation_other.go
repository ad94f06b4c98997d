//go:build !linux

package systemd

func closeOnExec(fd int) error { return ErrNotSupported }

func socketAddr(fd int) (network, address string, listening bool, err error) {
	return "", "", false, ErrNotSupported
}
