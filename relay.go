package baton

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Relaying datagrams between generations (RelayPacket, RelayedPackets).
//
// A connection-oriented protocol over UDP — QUIC — keeps its connections
// in user space: the socket is shared by every generation, but only the
// generation that made a connection knows it. Once a successor serves, the
// kernel gives every datagram to whoever reads the socket, and the
// draining generation stops reading it (or it would steal the successor's
// datagrams). A datagram of a connection that the draining generation
// still serves must then be relayed to it by the generation that read it.
// The application tells which generation a datagram belongs to (QUIC: by
// the connection ID it issued); baton carries it there.
//
// Every two neighbouring generations share a relay socket: a Unix
// socketpair that keeps message boundaries (SOCK_SEQPACKET on Linux,
// SOCK_DGRAM on macOS, which has no SOCK_SEQPACKET for Unix sockets). The
// successor creates it and passes one end with its ready frame, so it
// works from the moment both serve (a probation included) for as long as
// both live; a generation that stops passes its relay socket to its
// predecessor on to its successor, which joins the two directly. A
// datagram for a generation two or more away travels from neighbour to
// neighbour. Each hop moves it strictly toward its generation, and a
// generation drops one that came from the wrong side, so no datagram
// ever loops.
//
// Nothing on the way waits: a datagram that finds its link's socket
// buffer full, its generation gone, or no queue to take it, is dropped and
// counted (RelayStats), as the network would drop it. Bounded by the
// relay socket's buffer on the way and by relayQueueLen at the end.

// MaxRelayedPacket bounds one relayed datagram: the largest UDP payload.
const MaxRelayedPacket = 65507

// relayQueueLen bounds the datagrams relayed to one channel that the
// application has not read yet: the same order as a socket's receive
// buffer of full-size QUIC packets.
const relayQueueLen = 1024

// relaySendBuf asks the kernel for room for a burst on each relay socket.
// The kernel caps it at net.core.wmem_max (often 208 KiB: some 90 QUIC
// datagrams in flight).
const relaySendBuf = 4 << 20

// ErrRelayDropped is wrapped by the error of RelayPacket when the datagram
// was not sent: it is dropped, and counted in RelayStats.
var ErrRelayDropped = errors.New("baton: relayed datagram dropped")

// RelayedPacket is a datagram another generation relayed to this one.
type RelayedPacket struct {
	// From is the address the datagram came from: the client.
	From netip.AddrPort
	// Data is the datagram, the receiver's to keep.
	Data []byte
}

// RelayStats counts what this generation relayed. A datagram dropped on
// its way is counted by the generation that dropped it.
type RelayStats struct {
	// Sent counts datagrams this generation put on a relay socket:
	// its own (RelayPacket) and those it passed on.
	Sent uint64 `json:"sent"`
	// PassedOn counts the datagrams of Sent that another generation
	// relayed for a third one.
	PassedOn uint64 `json:"passed_on"`
	// Received counts datagrams delivered to a RelayedPackets queue.
	Received uint64 `json:"received"`
	// DroppedGone counts datagrams for a generation no link leads to:
	// it has exited, or never was; or that arrived from the side of the
	// generation they were for, which stopped while they were under way.
	DroppedGone uint64 `json:"dropped_gone"`
	// DroppedFull counts datagrams that found a relay socket's buffer
	// or a RelayedPackets queue full.
	DroppedFull uint64 `json:"dropped_full"`
	// DroppedUnclaimed counts datagrams for a channel this generation
	// never asked for with RelayedPackets.
	DroppedUnclaimed uint64 `json:"dropped_unclaimed"`
	// DroppedMalformed counts datagrams that could not be relayed as
	// they were: larger than MaxRelayedPacket or empty, or, from another
	// generation, a malformed relay message.
	DroppedMalformed uint64 `json:"dropped_malformed"`
}

// The relay message, one per datagram on a relay socket:
//
//	generation u32 (≥ 1), channel (u8 length, 1 to 255 bytes, a valid
//	name), address family u8 (4 or 6), address (4 or 16 bytes), port u16,
//	then the datagram (1 to MaxRelayedPacket bytes) to the end.
//
// An IPv6 zone is not carried: relayed datagrams come from one socket,
// whose zone the receiver's copy has too.
type relayMsg struct {
	Gen     int
	Channel string
	From    netip.AddrPort
	Data    []byte // aliases the parsed message
}

// maxRelayMsg is the largest relay message.
const maxRelayMsg = 4 + 1 + maxNameLen + 1 + 16 + 2 + MaxRelayedPacket

func encodeRelayed(m relayMsg) ([]byte, error) {
	switch {
	case m.Gen < 1 || int64(m.Gen) > 1<<32-1:
		return nil, fmt.Errorf("bad generation %d", m.Gen)
	case !validName(m.Channel):
		return nil, fmt.Errorf("bad channel %q", m.Channel)
	case len(m.Data) == 0:
		return nil, errors.New("an empty datagram")
	case len(m.Data) > MaxRelayedPacket:
		return nil, fmt.Errorf("a datagram of %d bytes exceeds MaxRelayedPacket (%d)", len(m.Data), MaxRelayedPacket)
	case !m.From.IsValid():
		return nil, errors.New("no source address")
	}
	ip := m.From.Addr()
	b := make([]byte, 0, 4+1+len(m.Channel)+1+16+2+len(m.Data))
	b = binary.BigEndian.AppendUint32(b, uint32(m.Gen))
	b = append(b, byte(len(m.Channel)))
	b = append(b, m.Channel...)
	if ip.Is4() {
		b = append(b, 4)
		a := ip.As4()
		b = append(b, a[:]...)
	} else {
		b = append(b, 6)
		a := ip.As16()
		b = append(b, a[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, m.From.Port())
	return append(b, m.Data...), nil
}

func parseRelayed(b []byte) (relayMsg, error) {
	var m relayMsg
	if len(b) < 5 {
		return m, fmt.Errorf("relay message of %d bytes", len(b))
	}
	gen := binary.BigEndian.Uint32(b)
	if gen == 0 {
		return m, errors.New("relay message for generation 0")
	}
	m.Gen = int(gen)
	n := int(b[4])
	b = b[5:]
	if len(b) < n {
		return m, errors.New("relay message cut short in its channel")
	}
	m.Channel = string(b[:n])
	if !validName(m.Channel) {
		return m, fmt.Errorf("relay message for bad channel %q", m.Channel)
	}
	b = b[n:]
	if len(b) < 1 {
		return m, errors.New("relay message without an address")
	}
	var alen int
	switch b[0] {
	case 4:
		alen = 4
	case 6:
		alen = 16
	default:
		return m, fmt.Errorf("relay message with address family %d", b[0])
	}
	b = b[1:]
	if len(b) < alen+2 {
		return m, errors.New("relay message cut short in its address")
	}
	ip, _ := netip.AddrFromSlice(b[:alen])
	m.From = netip.AddrPortFrom(ip, binary.BigEndian.Uint16(b[alen:]))
	b = b[alen+2:]
	switch {
	case len(b) == 0:
		return m, errors.New("relay message without a datagram")
	case len(b) > MaxRelayedPacket:
		return m, fmt.Errorf("relayed datagram of %d bytes exceeds MaxRelayedPacket (%d)", len(b), MaxRelayedPacket)
	}
	m.Data = b
	return m, nil
}
