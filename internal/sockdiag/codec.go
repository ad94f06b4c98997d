package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"
)

// TCP states, as the kernel numbers them (include/net/tcp_states.h).
const (
	Established = 1
	SynSent     = 2
	SynRecv     = 3
	FinWait1    = 4
	FinWait2    = 5
	TimeWait    = 6
	Close       = 7
	CloseWait   = 8
	LastAck     = 9
	Listen      = 10
	Closing     = 11
)

// States is a set of TCP states: bit 1<<state for each.
type States uint32

// Of returns the set of the given states.
func Of(states ...uint8) States {
	var s States
	for _, st := range states {
		s |= 1 << st
	}
	return s
}

// Held is the states of a connection a process holds a descriptor of:
// every state but listening, closed and TIME_WAIT (which no descriptor
// names).
var Held = Of(Established, SynSent, SynRecv, FinWait1, FinWait2, CloseWait, LastAck, Closing)

// A TCPSocket is one socket of a dump.
type TCPSocket struct {
	Local, Remote netip.AddrPort
	State         uint8
	Inode         uint64 // 0 for a connection still in an accept queue
}

// Message types and flags (linux/netlink.h, linux/sock_diag.h). Spelled
// out rather than taken from x/sys/unix so that the codec builds, and is
// fuzzed, everywhere.
const (
	nlmsgError       = 2
	nlmsgDone        = 3
	sockDiagByFamily = 20
	nlmRequest       = 0x1
	nlmDump          = 0x300 // NLM_F_ROOT | NLM_F_MATCH

	afUnix     = 1
	afInet     = 2
	afInet6    = 10
	ipprotoTCP = 6

	nlmsgHdrLen    = 16 // struct nlmsghdr
	inetDiagReqLen = 56 // struct inet_diag_req_v2
	inetDiagMsgLen = 72 // struct inet_diag_msg
	unixDiagReqLen = 24 // struct unix_diag_req
	unixDiagMsgLen = 16 // struct unix_diag_msg
)

// ErrNoSocket is the kernel's answer to a lookup of a socket that does
// not exist (ENOENT).
var ErrNoSocket = errors.New("sockdiag: no such socket")

// header writes a netlink header for a body of n bytes.
func header(b []byte, flags uint16, seq uint32) {
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	ne.PutUint16(b[6:], nlmRequest|flags)
	ne.PutUint32(b[8:], seq)
}

// tcpDumpRequest asks for every TCP socket of family in states.
func tcpDumpRequest(family uint8, states States, seq uint32) []byte {
	b := make([]byte, nlmsgHdrLen+inetDiagReqLen)
	header(b, nlmDump, seq)
	r := b[nlmsgHdrLen:]
	r[0], r[1] = family, ipprotoTCP
	binary.NativeEndian.PutUint32(r[4:], uint32(states))
	return b
}

// tcpLookupRequest asks for the one TCP socket of family bound to local
// and connected to remote, in any state.
func tcpLookupRequest(family uint8, local, remote netip.AddrPort, seq uint32) []byte {
	b := make([]byte, nlmsgHdrLen+inetDiagReqLen)
	header(b, 0, seq)
	r := b[nlmsgHdrLen:]
	r[0], r[1] = family, ipprotoTCP
	ne := binary.NativeEndian
	ne.PutUint32(r[4:], 0xffffffff) // every state
	binary.BigEndian.PutUint16(r[8:], local.Port())
	binary.BigEndian.PutUint16(r[10:], remote.Port())
	putAddr(r[12:28], family, local.Addr())
	putAddr(r[28:44], family, remote.Addr())
	ne.PutUint32(r[48:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(r[52:], 0xffffffff)
	return b
}

// putAddr writes a as the kernel keeps it for family: 4 bytes for
// AF_INET, 16 (v4-mapped for an IPv4 address) for AF_INET6.
func putAddr(dst []byte, family uint8, a netip.Addr) {
	if family == afInet {
		a4 := a.Unmap().As4()
		copy(dst, a4[:])
		return
	}
	a16 := a.As16()
	copy(dst, a16[:])
}

// unixDumpRequest asks for every Unix domain socket.
func unixDumpRequest(seq uint32) []byte {
	b := make([]byte, nlmsgHdrLen+unixDiagReqLen)
	header(b, nlmDump, seq)
	r := b[nlmsgHdrLen:]
	r[0] = afUnix
	binary.NativeEndian.PutUint32(r[4:], 0xffffffff) // every state
	return b
}

// parseMessages calls each with the type and body of every netlink
// message of one datagram, and reports whether the datagram ended a dump
// (NLMSG_DONE). A netlink error message is returned as its errno
// (ErrNoSocket for ENOENT); a message out of format is an error.
func parseMessages(b []byte, each func(body []byte) error) (done bool, err error) {
	ne := binary.NativeEndian
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return false, fmt.Errorf("sockdiag: %d bytes left, short of a message header", len(b))
		}
		n := int(ne.Uint32(b[0:]))
		if n < nlmsgHdrLen || n > len(b) {
			return false, fmt.Errorf("sockdiag: message of %d bytes in %d", n, len(b))
		}
		body := b[nlmsgHdrLen:n]
		switch typ := ne.Uint16(b[4:]); typ {
		case nlmsgDone:
			return true, nil
		case nlmsgError:
			if len(body) < 4 {
				return false, errors.New("sockdiag: short error message")
			}
			errno := syscall.Errno(-int32(ne.Uint32(body)))
			if errno == syscall.ENOENT {
				return false, ErrNoSocket
			}
			if errno == 0 {
				return false, errors.New("sockdiag: an acknowledgement where an answer was due")
			}
			return false, fmt.Errorf("sockdiag: %w", errno)
		case sockDiagByFamily:
			if err := each(body); err != nil {
				return false, err
			}
		default:
			return false, fmt.Errorf("sockdiag: message of type %d", typ)
		}
		// Messages are aligned to 4 bytes; the last may not be padded.
		n = min((n+3)&^3, len(b))
		b = b[n:]
	}
	return false, nil
}

// parseTCP decodes an inet_diag_msg.
func parseTCP(body []byte) (TCPSocket, error) {
	if len(body) < inetDiagMsgLen {
		return TCPSocket{}, fmt.Errorf("sockdiag: inet_diag_msg of %d bytes, want %d", len(body), inetDiagMsgLen)
	}
	var s TCPSocket
	family := body[0]
	s.State = body[1]
	sport, dport := binary.BigEndian.Uint16(body[4:]), binary.BigEndian.Uint16(body[6:])
	var src, dst netip.Addr
	switch family {
	case afInet:
		src, dst = netip.AddrFrom4([4]byte(body[8:12])), netip.AddrFrom4([4]byte(body[24:28]))
	case afInet6:
		src, dst = netip.AddrFrom16([16]byte(body[8:24])), netip.AddrFrom16([16]byte(body[24:40]))
	default:
		return TCPSocket{}, fmt.Errorf("sockdiag: inet_diag_msg of family %d", family)
	}
	s.Local, s.Remote = netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport)
	s.Inode = uint64(binary.NativeEndian.Uint32(body[68:]))
	return s, nil
}

// parseUnixInode decodes the inode of a unix_diag_msg.
func parseUnixInode(body []byte) (uint64, error) {
	if len(body) < unixDiagMsgLen {
		return 0, fmt.Errorf("sockdiag: unix_diag_msg of %d bytes, want %d", len(body), unixDiagMsgLen)
	}
	return uint64(binary.NativeEndian.Uint32(body[4:])), nil
}
