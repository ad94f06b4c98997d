package soak

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"

	"github.com/batonhq/baton/internal/procfs"
	"golang.org/x/sys/unix"
)

// A Sample is what one process holds at one moment.
type Sample struct {
	FDs    int      // open descriptors
	Conns  int      // of which TCP connections (connected, not listening)
	Others []string // what the rest are: "socket", "pipe", a path...
	RSSKiB int64    // VmRSS
}

// Other is the number of descriptors that are not TCP connections.
func (s Sample) Other() int { return len(s.Others) }

// Measure samples pid. Each descriptor is looked at through a duplicate
// (pidfd_getfd), so a TCP connection is told from a listener or a Unix
// socket by asking the socket itself, at that instant: /proc/net/tcp is
// not read atomically and misses sockets when connections churn. One that
// is closed between the listing and the look is not counted.
func Measure(pid int) (Sample, error) {
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return Sample{}, os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(pidfd)
	links, err := procfs.FDLinks(pid)
	if err != nil {
		return Sample{}, err
	}
	var s Sample
	for _, target := range slices.Sorted(maps.Keys(links)) {
		link := links[target]
		fd, err := unix.PidfdGetfd(pidfd, target, 0)
		if errors.Is(err, unix.EBADF) {
			continue // closed since the listing
		}
		if err != nil {
			return Sample{}, os.NewSyscallError("pidfd_getfd", err)
		}
		conn := tcpConn(fd)
		unix.Close(fd) // at once: a connection the server closes lives on while we hold it
		s.FDs++
		if conn {
			s.Conns++
			continue
		}
		if strings.HasPrefix(link, "socket:") || strings.HasPrefix(link, "pipe:") {
			link, _, _ = strings.Cut(link, ":")
		}
		s.Others = append(s.Others, link)
	}
	if s.RSSKiB, err = procfs.VmRSS(pid); err != nil {
		return Sample{}, fmt.Errorf("/proc/%d/status: %w", pid, err)
	}
	return s, nil
}

// tcpConn reports whether fd is a TCP socket that is not listening.
func tcpConn(fd int) bool {
	domain, err1 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	proto, err2 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	acc, err3 := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	return err1 == nil && err2 == nil && err3 == nil &&
		(domain == unix.AF_INET || domain == unix.AF_INET6) && proto == unix.IPPROTO_TCP && acc == 0
}
