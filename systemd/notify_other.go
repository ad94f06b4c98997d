//go:build !linux

package systemd

import "time"

// The notification and activation protocols are systemd's, and systemd
// runs on Linux only.
const supported = false

func send(addr string, msg []byte, fds []int) error { return ErrNotSupported }

func barrier(addr string, timeout time.Duration) error { return ErrNotSupported }

func monotonicUsec() (uint64, error) { return 0, ErrNotSupported }
