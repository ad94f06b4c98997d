package server

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/batonhq/baton"
)

// connState is what a connection carries from one generation to the next:
// everything the successor needs to go on reading and answering as if
// nothing happened. It travels as the state blob of baton's HandOver.
type connState struct {
	// Answered is the application's own state: how many messages this
	// connection has had answered, by every generation together. A
	// client's closing handshake is answered with it, so a test can see
	// that it survived every upgrade.
	Answered uint64
	// Pending holds bytes that were read from the socket but belong to
	// a frame nobody has looked at yet: what net/http had buffered
	// after the upgrade request, handed on until some generation reads
	// them. They come before anything still in the kernel's buffer.
	Pending []byte
}

// The blob's layout, version 1:
//
//	byte     version (1)
//	byte     extensions in force; always 0, for none: permessage-deflate
//	         is never negotiated, so no compression context needs to travel
//	uvarint  Answered
//	uvarint  len(Pending)
//	bytes    Pending
//
// A successor that meets a version or an extension it does not know
// cannot resume the stream, and says so with a close frame.
const (
	stateVersion = 1
	// maxPending bounds Pending so that any state fits in
	// baton.MaxConnState with room for the fixed fields.
	maxPending = baton.MaxConnState - 32
)

var errBadState = errors.New("websocket: malformed connection state")

func (s connState) encode() ([]byte, error) {
	if len(s.Pending) > maxPending {
		return nil, fmt.Errorf("websocket: %d pending bytes, more than a state can carry (%d)", len(s.Pending), maxPending)
	}
	b := make([]byte, 0, 2+2*binary.MaxVarintLen64+len(s.Pending))
	b = append(b, stateVersion, 0)
	b = binary.AppendUvarint(b, s.Answered)
	b = binary.AppendUvarint(b, uint64(len(s.Pending)))
	return append(b, s.Pending...), nil
}

// decodeState parses a blob made by encode. Anything else, down to a
// trailing byte, is an error: the blob comes over a link that is trusted,
// but a blob we cannot account for means a stream we cannot resume.
func decodeState(b []byte) (connState, error) {
	var s connState
	if len(b) < 2 {
		return s, fmt.Errorf("%w: %d bytes", errBadState, len(b))
	}
	if b[0] != stateVersion {
		return s, fmt.Errorf("%w: version %d, want %d", errBadState, b[0], stateVersion)
	}
	if b[1] != 0 {
		return s, fmt.Errorf("%w: extensions %#x in force, want none", errBadState, b[1])
	}
	b = b[2:]
	answered, n := uvarint(b)
	if n <= 0 {
		return s, fmt.Errorf("%w: bad message count", errBadState)
	}
	b = b[n:]
	size, n := uvarint(b)
	if n <= 0 || size > maxPending || size != uint64(len(b)-n) {
		return s, fmt.Errorf("%w: pending bytes do not match their length", errBadState)
	}
	s.Answered = answered
	if size > 0 {
		s.Pending = append([]byte(nil), b[n:]...)
	}
	return s, nil
}

// uvarint is binary.Uvarint that also refuses a number not written in
// its shortest form, so that every state has exactly one encoding.
func uvarint(b []byte) (uint64, int) {
	v, n := binary.Uvarint(b)
	if n > 0 && n != len(binary.AppendUvarint(nil, v)) {
		return 0, 0
	}
	return v, n
}
