package systemd

import (
	"fmt"
	"net"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

func closeOnExec(fd int) error {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC); err != nil {
		return os.NewSyscallError("fcntl(F_SETFD)", err)
	}
	return nil
}

func socketAddr(fd int) (network, address string, listening bool, err error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return "", "", false, os.NewSyscallError("getsockopt(SO_TYPE)", err)
	}
	acc, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
	if err != nil {
		return "", "", false, os.NewSyscallError("getsockopt(SO_ACCEPTCONN)", err)
	}
	listening = acc != 0
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return "", "", false, os.NewSyscallError("getsockname", err)
	}
	var (
		ip   net.IP
		port int
		zone string
	)
	switch sa := sa.(type) {
	case *unix.SockaddrUnix:
		name := sa.Name
		if name == "@" {
			// x/sys/unix shows the all-zero sun_path of an unnamed socket
			// as an abstract name of length zero.
			name = ""
		}
		switch typ {
		case unix.SOCK_STREAM:
			return "unix", name, listening, nil
		case unix.SOCK_DGRAM:
			return "unixgram", name, listening, nil
		case unix.SOCK_SEQPACKET:
			return "unixpacket", name, listening, nil
		}
		return "", "", false, fmt.Errorf("unsupported Unix socket type %d", typ)
	case *unix.SockaddrInet4:
		ip, port = net.IP(append([]byte(nil), sa.Addr[:]...)), sa.Port
	case *unix.SockaddrInet6:
		ip, port, zone = net.IP(append([]byte(nil), sa.Addr[:]...)), sa.Port, zoneName(sa.ZoneId)
	default:
		return "", "", false, fmt.Errorf("unsupported socket address %T", sa)
	}
	// SOCK_STREAM alone does not make TCP: SCTP has stream sockets too.
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	if err != nil {
		return "", "", false, os.NewSyscallError("getsockopt(SO_PROTOCOL)", err)
	}
	switch {
	case typ == unix.SOCK_STREAM && (proto == unix.IPPROTO_TCP || proto == unix.IPPROTO_MPTCP):
		return "tcp", (&net.TCPAddr{IP: ip, Port: port, Zone: zone}).String(), listening, nil
	case typ == unix.SOCK_DGRAM && proto == unix.IPPROTO_UDP:
		return "udp", (&net.UDPAddr{IP: ip, Port: port, Zone: zone}).String(), listening, nil
	}
	return "", "", false, fmt.Errorf("unsupported IP socket (type %d, protocol %d)", typ, proto)
}

// zoneName names an IPv6 scope as the net package does: by interface name,
// or by number when no interface has that index.
func zoneName(id uint32) string {
	if id == 0 {
		return ""
	}
	if ifi, err := net.InterfaceByIndex(int(id)); err == nil {
		return ifi.Name
	}
	return strconv.FormatUint(uint64(id), 10)
}
