//go:build !linux

package procfs

func EstablishedTCP() (map[uint64]bool, error) { return nil, ErrNotSupported }

func UnixSockets() (map[uint64]bool, error) { return nil, ErrNotSupported }
