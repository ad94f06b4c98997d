package quicroute

import (
	"crypto/rand"
	"encoding/binary"

	"github.com/quic-go/quic-go"
)

// CIDLen is the length of the connection IDs a generation issues: 4 bytes
// naming the generation and 8 random ones. 8 random bytes keep two IDs of
// one generation from colliding (quic-go's own default is 4 bytes in all),
// and 12 stays well under the 20 that QUIC allows.
const CIDLen = 12

// genLen is the prefix of a connection ID that names its generation.
const genLen = 4

// CIDGenerator is a quic.ConnectionIDGenerator whose IDs name the
// generation that issued them: the generation as a big-endian uint32, then
// CIDLen-4 bytes from crypto/rand. Set it as quic.Transport's
// ConnectionIDGenerator; a Router routes each packet by it.
//
// The trade-off, the same as mvfst's server ID in Meta's QUIC load
// balancing: the generation is in clear text in every packet, so an
// observer learns how often the server was upgraded and can tell that
// two connection IDs came from the same generation, which RFC 9000 §5.1
// asks an endpoint to avoid. It cannot link two IDs of one connection
// (the random part is the connection's secret) any better than two IDs of
// different connections of that generation. Encrypting the prefix
// (draft-ietf-quic-load-balancers) would hide it, at the cost of a key
// that every generation must share; not done here.
type CIDGenerator struct {
	gen uint32
}

// NewCIDGenerator returns the generator of generation gen's connection
// IDs.
func NewCIDGenerator(gen uint32) *CIDGenerator { return &CIDGenerator{gen: gen} }

// GenerateConnectionID returns a new connection ID naming the generation.
func (g *CIDGenerator) GenerateConnectionID() (quic.ConnectionID, error) {
	var b [CIDLen]byte
	binary.BigEndian.PutUint32(b[:genLen], g.gen)
	if _, err := rand.Read(b[genLen:]); err != nil {
		return quic.ConnectionID{}, err
	}
	return quic.ConnectionIDFromBytes(b[:]), nil
}

// ConnectionIDLen is CIDLen.
func (g *CIDGenerator) ConnectionIDLen() int { return CIDLen }

// GenerationOf returns the generation a connection ID of CIDLen bytes
// names, and false for an ID of any other length.
func GenerationOf(cid []byte) (uint32, bool) {
	if len(cid) != CIDLen {
		return 0, false
	}
	return binary.BigEndian.Uint32(cid[:genLen]), true
}

var _ quic.ConnectionIDGenerator = (*CIDGenerator)(nil)
