package soak

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

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
	dir := "/proc/" + strconv.Itoa(pid)
	ents, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return Sample{}, err
	}
	var s Sample
	for _, e := range ents {
		target, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		link, _ := os.Readlink(dir + "/fd/" + e.Name())
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
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return Sample{}, err
	}
	if s.RSSKiB, err = ParseVmRSS(status); err != nil {
		return Sample{}, fmt.Errorf("%s/status: %w", dir, err)
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

// ParseVmRSS returns the VmRSS line of /proc/PID/status, in KiB.
func ParseVmRSS(status []byte) (int64, error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q: want <number> kB", sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("VmRSS line %q: want <number> kB", sc.Text())
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmRSS line")
}
