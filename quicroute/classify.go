package quicroute

import "encoding/binary"

// Route says where a datagram read from the shared socket belongs.
type Route uint8

const (
	// Local: not a packet any generation could route (too short,
	// malformed, an unknown QUIC version): the generation that read it
	// keeps it, and its quic-go drops it or answers with a version
	// negotiation.
	Local Route = iota
	// Newest: an Initial or 0-RTT packet, whose destination connection ID
	// the client chose: a new connection, for the newest generation.
	Newest
	// Named: a Handshake or short-header (1-RTT) packet, whose
	// destination connection ID the server issued: it belongs to the
	// generation that ID names.
	Named
	// NewestOrNamed: an Initial or 0-RTT packet whose destination
	// connection ID has the length of ours. Either a client continuing a
	// handshake (after the server's first Initial, a client sends every
	// packet, Initial and 0-RTT too, to the ID the server chose), which
	// belongs to the generation it names; or a new connection whose
	// random ID happens to have our length, which is the newest's. The
	// Router relays it to the generation it names if that one lives, and
	// takes it for the newest otherwise.
	NewestOrNamed
)

func (r Route) String() string {
	switch r {
	case Local:
		return "local"
	case Newest:
		return "newest"
	case Named:
		return "named"
	case NewestOrNamed:
		return "newest-or-named"
	}
	return "route(?)"
}

// The QUIC versions whose long-header packet types we know: the packet
// type bits mean different things in each (RFC 9000 §17.2, RFC 9369 §3.2).
const (
	version1 = 0x00000001
	version2 = 0x6b3343cf
)

// Long-header packet types, as the two bits 0x30 of the first byte give
// them.
const (
	typeInitial = iota
	type0RTT
	typeHandshake
	typeRetry
)

// maxCIDLen is the longest connection ID QUIC v1 and v2 allow (RFC 9000
// §17.2).
const maxCIDLen = 20

// Classify says where the datagram b belongs, for a server whose
// connection IDs are cidLen bytes long (4 to 20; anything else makes every
// datagram Local) and start with the generation, as CIDGenerator's do, and for Named the generation its
// destination connection ID names. It is pure and reads only the
// version-independent header (RFC 8999 §5) plus the packet type of QUIC
// v1 and v2: the first packet of a coalesced datagram decides for all of
// it.
//
//   - Long header (bit 0x80), version 1 or 2: Initial and 0-RTT are
//     Newest, or NewestOrNamed if their destination connection ID is
//     cidLen bytes long (the client may have chosen it at random, and a
//     random one can look like ours); Handshake is Named if its
//     destination connection ID is cidLen bytes long.
//   - Short header (bit 0x80 clear, fixed bit 0x40 set, at least 1+cidLen
//     bytes): Named.
//   - Anything else is Local.
//
// A generation of 0 is never a generation's: the router drops a Named
// packet for it, and takes a NewestOrNamed one for the newest.
func Classify(b []byte, cidLen int) (Route, uint32) {
	if len(b) == 0 || cidLen < genLen || cidLen > maxCIDLen {
		return Local, 0
	}
	if b[0]&0x80 == 0 {
		// Short header: 0x40 is the fixed bit; quic-go takes a packet
		// without it for something other than QUIC.
		if b[0]&0x40 == 0 || len(b) < 1+cidLen {
			return Local, 0
		}
		return Named, binary.BigEndian.Uint32(b[1:])
	}
	// Long header: flags, version u32, DCID length u8, DCID.
	if len(b) < 6 {
		return Local, 0
	}
	dcidLen := int(b[5])
	if dcidLen > maxCIDLen || len(b) < 6+dcidLen {
		return Local, 0
	}
	typ := int(b[0]&0x30) >> 4
	switch binary.BigEndian.Uint32(b[1:5]) {
	case version1:
	case version2:
		// v2 rotates the types by one: Initial is 0b01, 0-RTT 0b10,
		// Handshake 0b11, Retry 0b00.
		typ = (typ + 3) % 4
	default:
		return Local, 0
	}
	switch typ {
	case typeInitial, type0RTT:
		if dcidLen == cidLen {
			return NewestOrNamed, binary.BigEndian.Uint32(b[6:])
		}
		return Newest, 0
	case typeHandshake:
		if dcidLen == cidLen {
			return Named, binary.BigEndian.Uint32(b[6:])
		}
	}
	// A Retry is a server's packet, and a Handshake packet with a
	// connection ID we did not issue is nobody's.
	return Local, 0
}
