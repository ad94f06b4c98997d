//go:build !linux

package procfs

func EstablishedTCP() (map[uint64]bool, error) { return nil, ErrNotSupported }
