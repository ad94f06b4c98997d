//go:build !linux

package procfs

import "time"

// The readers, where there is no Linux /proc: each says so.

func ReadStat(pid int) (Stat, error) { return Stat{}, ErrNotSupported }

func Alive(pid int) bool { return false }

func Pids() ([]int, error) { return nil, ErrNotSupported }

func Children(pid int) ([]Stat, error) { return nil, ErrNotSupported }

func FDLinks(pid int) (map[int]string, error) { return nil, ErrNotSupported }

func SocketInodes(pid int) ([]uint64, error) { return nil, ErrNotSupported }

func FDCount(pid int) (int, error) { return 0, ErrNotSupported }

func SocketFDs(pid int, inodes map[uint64]bool) (int, error) { return 0, ErrNotSupported }

func VmRSS(pid int) (kib int64, err error) { return 0, ErrNotSupported }

func NetTCP() ([]TCPSocket, error) { return nil, ErrNotSupported }

func BootTime() (time.Time, error) { return time.Time{}, ErrNotSupported }

func Started(st Stat) (time.Time, error) { return time.Time{}, ErrNotSupported }
