package sockdiag

import (
	"errors"
	"net/netip"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// timeout bounds each answer: the kernel answers at once, so a wait this
// long means something is wrong, and a status or a probe must not hang on
// it.
const timeout = 2 * time.Second

// exchange sends each request in turn on a new NETLINK_SOCK_DIAG socket
// and passes every message of the answers to each. A dump request's
// answer ends with NLMSG_DONE; any other's is one datagram.
func exchange(reqs [][]byte, dump bool, each func(body []byte) error) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return os.NewSyscallError("socket(NETLINK_SOCK_DIAG)", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return os.NewSyscallError("setsockopt(SO_RCVTIMEO)", err)
	}
	buf := make([]byte, 64<<10)
	for _, req := range reqs {
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return os.NewSyscallError("sendto(sock_diag)", err)
		}
		for {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return os.NewSyscallError("recvfrom(sock_diag)", err)
			}
			done, err := parseMessages(buf[:n], each)
			if err != nil {
				return err
			}
			if done || !dump {
				break
			}
		}
	}
	return nil
}

// TCP returns the TCP sockets, IPv4 and IPv6, of our network namespace in
// states.
func TCP(states States) ([]TCPSocket, error) {
	var out []TCPSocket
	reqs := [][]byte{tcpDumpRequest(afInet, states, 1), tcpDumpRequest(afInet6, states, 2)}
	err := exchange(reqs, true, func(body []byte) error {
		s, err := parseTCP(body)
		if err == nil {
			out = append(out, s)
		}
		return err
	})
	return out, err
}

// LookupTCP returns the TCP socket bound to local and connected to
// remote: the server side of a connection when local is the server's
// address. Its Inode is 0 while it waits in an accept queue. It returns
// ErrNoSocket if there is none.
func LookupTCP(local, remote netip.AddrPort) (TCPSocket, error) {
	families := []uint8{afInet6}
	if local.Addr().Unmap().Is4() {
		// A dual-stack listener's connections are AF_INET6 sockets with
		// v4-mapped addresses.
		families = []uint8{afInet, afInet6}
	}
	var last error
	for i, fam := range families {
		var found *TCPSocket
		err := exchange([][]byte{tcpLookupRequest(fam, local, remote, uint32(i+1))}, false, func(body []byte) error {
			s, err := parseTCP(body)
			if err == nil {
				found = &s
			}
			return err
		})
		if err == nil && found != nil {
			return *found, nil
		}
		if err == nil {
			err = ErrNoSocket
		}
		if !errors.Is(err, ErrNoSocket) {
			return TCPSocket{}, err
		}
		last = err
	}
	return TCPSocket{}, last
}

// UnixInodes returns the inodes of the Unix domain sockets of our network
// namespace: few, so this is quick. With procfs.SocketInodes it tells a
// process's network sockets from its Unix ones.
func UnixInodes() (map[uint64]bool, error) {
	out := map[uint64]bool{}
	err := exchange([][]byte{unixDumpRequest(3)}, true, func(body []byte) error {
		ino, err := parseUnixInode(body)
		if err == nil {
			out[ino] = true
		}
		return err
	})
	return out, err
}
