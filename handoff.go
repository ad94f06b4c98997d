package baton

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The handoff protocol, spoken over one end of a Unix stream socketpair.
//
// Every message is a frame: a 5-byte header (1 byte type, 4 bytes big-endian
// body length) followed by the body. Bodies are binary, big-endian, with a
// fixed layout per type (see doc.go). A frame of type frameFds carries file
// descriptors as SCM_RIGHTS attached to its first byte; its body describes
// exactly those descriptors, in order.
//
//	incumbent → successor   hello{version, generation, pid, fds}
//	incumbent → successor   fds[...] × ceil(fds/maxFdsPerFrame), each with SCM_RIGHTS
//	incumbent → successor   state{blobs}
//	successor → incumbent   ready{pid}        or abort{reason}
//	incumbent → successor   ack{probation}    the successor serves; 0: the incumbent drains
//	incumbent → successor   passed{}          after a probation: the incumbent drains now
//	successor → incumbent   serving{}         the PID file and control socket name it now
//	incumbent → successor   conn{id, name, state} × any, each with one descriptor
//	successor → incumbent   connAck{id}       or connRefuse{id, reason}, for each
//
// EOF on the socket means the peer is gone. Anything malformed is an error:
// the successor aborts, the incumbent kills the successor and keeps serving.
//
// Encoding and parsing are pure functions from values to bodies and back.
// The parsers are strict — exact lengths, no trailing bytes, every length
// checked against its limit and against what is left — and each encoder
// refuses what its parser would refuse (an abort reason, it mends), so
// that neither end sends a frame the other must reject.

const (
	// protocolVersion 2 added the state frame to the handoff and the
	// generation link after the ack (conn, connAck, connRefuse); 3 gave
	// the ack a body, the probation, and added the passed frame; 4 made
	// the ready frame carry the relay socket (relay.go). A peer of
	// another version is refused at the hello, by either end: a version 2
	// successor would refuse the ack's body and, taking the ack as the
	// incumbent's commitment, name itself while on probation; a version 3
	// one would send ready without the relay socket.
	protocolVersion = 4

	frameHello = 'H'
	frameFds   = 'F'
	frameReady = 'R'
	frameAbort = 'X'
	frameAck   = 'A'

	// framePassed ends a probation (an ack whose probation is not 0):
	// the successor's probation passed, the incumbent drains, and the
	// successor now names itself (PID file, control socket, service
	// managers). Sent at most once, and before any conn frame.
	framePassed = 'P'

	// frameServing follows the ack: the successor's PID file and control
	// socket are in place. An incumbent that re-executes in place waits
	// for it (Upgrader.Exec); any other ignores it, and an older one
	// never reads it, which is harmless: it is a few bytes in a socket
	// buffer.
	frameServing = 'S'

	// frameTakeover opens a conversation on the control socket: a new
	// instance asks the serving one for its descriptors. Its body is the
	// asker's pid, laid out as a ready frame's.
	frameTakeover = 'T'

	// frameState follows the last fds frame: the named state blobs the
	// incumbent set (SetState), possibly none.
	frameState = 'V'

	// The generation link, after the ack. frameConn passes one
	// established connection (exactly one descriptor attached); the
	// successor answers each with frameConnAck (it is the successor's
	// now) or frameConnRefuse (it is still the incumbent's).
	frameConn       = 'C'
	frameConnAck    = 'K'
	frameConnRefuse = 'N'

	// frameRelay passes the incumbent's relay socket to its own
	// predecessor on to the successor, as the incumbent stops: the two
	// generations it joined relay to each other directly from then on
	// (relay.go). Empty, with exactly one descriptor.
	frameRelay = 'L'

	frameHeaderLen = 5

	// maxFrameBody bounds every body we accept. The largest legitimate body
	// is an fds frame: maxFdsPerFrame entries of a few hundred bytes each.
	maxFrameBody = 1 << 20

	// maxFdsPerFrame stays well below the kernel's SCM_MAX_FD (253) so a
	// batch never fails with EINVAL, whatever else rides in the message.
	maxFdsPerFrame = 128

	// maxFds bounds the descriptors one hello may announce, so a corrupt
	// count cannot make the successor wait for fds that never come.
	maxFds = 1 << 20

	maxNameLen    = 255
	maxAddressLen = 4096
	maxReasonLen  = 4096

	// maxNetworkLen bounds a network name on the wire; the longest one
	// validNetwork knows is "unixpacket".
	maxNetworkLen = 16

	// maxStateBlobs bounds the named blobs of one state frame, so that
	// names and values (MaxState) together fit in a frame:
	// 1024 × (2+255+4) + 512 KiB < 1 MiB.
	maxStateBlobs = 1024

	// Body sizes of the fixed-layout frames.
	helloLen   = 2 + 4 + 4 + 4 // version u16, generation u32, pid u32, fds u32
	readyLen   = 4             // pid u32
	ackLen     = 4             // probation u32, in milliseconds
	connAckLen = 4             // id u32
)

// MaxProbation is the longest Options.Probation: the ack carries it in
// milliseconds, in 32 bits (some 49 days).
const MaxProbation = math.MaxUint32 * time.Millisecond

// fdKind says what an inherited descriptor is, so the successor can rebuild
// the right Go value around it. On the wire it is one byte: see code.
type fdKind string

const (
	kindListener fdKind = "listener" // net.Listener
	kindPacket   fdKind = "packet"   // net.PacketConn
	kindConn     fdKind = "conn"     // net.Conn
	kindFile     fdKind = "file"     // *os.File
)

// The kinds' codes on the wire. They are part of the protocol: never
// renumber one or reuse it. 0 is no kind, so a zeroed entry is refused.
const (
	codeListener byte = 1
	codePacket   byte = 2
	codeConn     byte = 3
	codeFile     byte = 4
)

// code returns k's byte on the wire, 0 for a kind the protocol lacks.
func (k fdKind) code() byte {
	switch k {
	case kindListener:
		return codeListener
	case kindPacket:
		return codePacket
	case kindConn:
		return codeConn
	case kindFile:
		return codeFile
	}
	return 0
}

// kindOf returns the kind whose wire code is c.
func kindOf(c byte) (fdKind, bool) {
	switch c {
	case codeListener:
		return kindListener, true
	case codePacket:
		return kindPacket, true
	case codeConn:
		return kindConn, true
	case codeFile:
		return kindFile, true
	}
	return "", false
}

// fdMeta describes one passed descriptor.
type fdMeta struct {
	// Name is set for descriptors added with Add; empty for Listen and
	// ListenPacket sockets, which are found by network and address.
	Name    string
	Kind    fdKind
	Network string
	// Address is what the application asked for ("127.0.0.1:0");
	// Actual is what the socket is bound to ("127.0.0.1:43521").
	Address string
	Actual  string
}

type helloMsg struct {
	Version    int
	Generation int
	PID        int
	Fds        int
}

type readyMsg struct {
	PID int
}

type abortMsg struct {
	Reason string
}

// ProtocolError reports a malformed or unexpected handoff message.
type ProtocolError struct {
	Msg string
}

func (e *ProtocolError) Error() string { return "baton: handoff protocol: " + e.Msg }

func protoErrorf(format string, args ...any) error {
	return &ProtocolError{Msg: fmt.Sprintf(format, args...)}
}

// encodeFrame returns header and body of one frame.
func encodeFrame(typ byte, body []byte) ([]byte, error) {
	if len(body) > maxFrameBody {
		return nil, protoErrorf("%c frame of %d bytes exceeds the limit of %d", typ, len(body), maxFrameBody)
	}
	b := make([]byte, frameHeaderLen, frameHeaderLen+len(body))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)))
	return append(b, body...), nil
}

// parseHeader checks a frame header and returns the type and body length.
func parseHeader(h []byte) (typ byte, n int, err error) {
	if len(h) != frameHeaderLen {
		return 0, 0, protoErrorf("short header (%d bytes)", len(h))
	}
	typ = h[0]
	switch typ {
	case frameHello, frameFds, frameReady, frameAbort, frameAck, framePassed, frameServing, frameTakeover,
		frameState, frameConn, frameConnAck, frameConnRefuse, frameRelay:
	default:
		return 0, 0, protoErrorf("unknown frame type %q", typ)
	}
	size := binary.BigEndian.Uint32(h[1:])
	if size > maxFrameBody {
		return 0, 0, protoErrorf("%c frame of %d bytes exceeds the limit of %d", typ, size, maxFrameBody)
	}
	return typ, int(size), nil
}

// readFrame reads one frame without descriptors. It never reads past the
// frame, so descriptors attached to the next frame stay in the socket.
func readFrame(r io.Reader) (typ byte, body []byte, err error) {
	var h [frameHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	typ, n, err := parseHeader(h[:])
	if err != nil {
		return 0, nil, err
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return typ, body, nil
}

// bodyLenError reports a fixed-layout body of the wrong size, short or with
// trailing bytes.
func bodyLenError(typ byte, got, want int) error {
	return protoErrorf("%c frame of %d bytes, want %d", typ, got, want)
}

// encodeHello returns the body of a hello frame:
// version u16, generation u32, pid u32, fds u32.
func encodeHello(m helloMsg) ([]byte, error) {
	if err := checkHello(int64(m.Version), int64(m.Generation), int64(m.PID), int64(m.Fds)); err != nil {
		return nil, err
	}
	b := make([]byte, 0, helloLen)
	b = binary.BigEndian.AppendUint16(b, uint16(m.Version))
	b = binary.BigEndian.AppendUint32(b, uint32(m.Generation))
	b = binary.BigEndian.AppendUint32(b, uint32(m.PID))
	b = binary.BigEndian.AppendUint32(b, uint32(m.Fds))
	return b, nil
}

func parseHello(body []byte) (helloMsg, error) {
	// The version is read and checked before the length, so that an
	// incumbent with another layout is reported as a version mismatch.
	if len(body) < 2 {
		return helloMsg{}, bodyLenError(frameHello, len(body), helloLen)
	}
	version := binary.BigEndian.Uint16(body)
	if version != protocolVersion {
		return helloMsg{}, protoErrorf("incumbent speaks version %d, this binary speaks %d", version, protocolVersion)
	}
	if len(body) != helloLen {
		return helloMsg{}, bodyLenError(frameHello, len(body), helloLen)
	}
	gen := binary.BigEndian.Uint32(body[2:])
	pid := binary.BigEndian.Uint32(body[6:])
	fds := binary.BigEndian.Uint32(body[10:])
	if err := checkHello(int64(version), int64(gen), int64(pid), int64(fds)); err != nil {
		return helloMsg{}, err
	}
	return helloMsg{Version: int(version), Generation: int(gen), PID: int(pid), Fds: int(fds)}, nil
}

// checkHello is what both ends require of a hello. The fields are int64 so
// that a value off the wire is judged, and reported, as it came, whatever
// the size of int. Generations and pids stop at MaxInt32: a pid_t is 32
// bits, and an int may be.
func checkHello(version, generation, pid, fds int64) error {
	switch {
	case version != protocolVersion:
		return protoErrorf("incumbent speaks version %d, this binary speaks %d", version, protocolVersion)
	case generation < 1 || generation > math.MaxInt32:
		return protoErrorf("bad generation %d", generation)
	case pid < 1 || pid > math.MaxInt32:
		return protoErrorf("bad incumbent pid %d", pid)
	case fds < 0 || fds > maxFds:
		return protoErrorf("bad descriptor count %d", fds)
	}
	return nil
}

// encodeFds returns the body of an fds frame: count u16, then per
// descriptor its kind code (u8) and name, network, address and actual
// address, each a u16 length and that many bytes.
func encodeFds(metas []fdMeta) ([]byte, error) {
	if err := checkFds(metas); err != nil {
		return nil, err
	}
	size := 2
	for _, m := range metas {
		size += 1 + 2 + len(m.Name) + 2 + len(m.Network) + 2 + len(m.Address) + 2 + len(m.Actual)
	}
	b := make([]byte, 0, size)
	b = binary.BigEndian.AppendUint16(b, uint16(len(metas)))
	for _, m := range metas {
		b = append(b, m.Kind.code())
		// checkFds has held every length to its limit, all below 1<<16.
		for _, s := range [...]string{m.Name, m.Network, m.Address, m.Actual} {
			b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
			b = append(b, s...)
		}
	}
	return b, nil
}

// parseFds decodes the body of an fds frame that arrived with nfds
// descriptors and checks that it describes exactly those.
func parseFds(body []byte, nfds int) ([]fdMeta, error) {
	if len(body) < 2 {
		return nil, protoErrorf("F frame of %d bytes, too short for the descriptor count", len(body))
	}
	if n := int(binary.BigEndian.Uint16(body)); n != nfds {
		return nil, protoErrorf("fds frame describes %d descriptors but carried %d", n, nfds)
	}
	if nfds == 0 || nfds > maxFdsPerFrame {
		return nil, protoErrorf("fds frame with %d descriptors (want 1 to %d)", nfds, maxFdsPerFrame)
	}
	// One conversion for the whole body: every field is a substring of
	// it, so a frame costs one allocation for its text, not four per
	// descriptor.
	rest := string(body[2:])
	metas := make([]fdMeta, nfds)
	for i := range metas {
		var err error
		if metas[i], rest, err = cutMeta(rest); err != nil {
			return nil, protoErrorf("descriptor %d: %v", i, err)
		}
	}
	if len(rest) > 0 {
		return nil, protoErrorf("F frame: %d bytes after the last descriptor", len(rest))
	}
	if err := checkFds(metas); err != nil {
		return nil, err
	}
	return metas, nil
}

// cutMeta decodes the descriptor at the start of s and returns the rest.
func cutMeta(s string) (m fdMeta, rest string, err error) {
	if len(s) < 1 {
		return m, s, errors.New("truncated before its kind")
	}
	var ok bool
	if m.Kind, ok = kindOf(s[0]); !ok {
		return m, s, fmt.Errorf("unknown kind code %d", s[0])
	}
	s = s[1:]
	if m.Name, s, err = cutString(s, "name", maxNameLen); err != nil {
		return m, s, err
	}
	if m.Network, s, err = cutString(s, "network", maxNetworkLen); err != nil {
		return m, s, err
	}
	if m.Address, s, err = cutString(s, "address", maxAddressLen); err != nil {
		return m, s, err
	}
	if m.Actual, s, err = cutString(s, "actual address", maxAddressLen); err != nil {
		return m, s, err
	}
	return m, s, nil
}

// cutString decodes a u16 length and that many bytes, at most limit, from
// the start of s and returns them and the rest. what names the field.
func cutString(s, what string, limit int) (v, rest string, err error) {
	if len(s) < 2 {
		return "", s, fmt.Errorf("truncated in the length of its %s", what)
	}
	n := int(s[0])<<8 | int(s[1])
	s = s[2:]
	switch {
	case n > limit:
		return "", s, fmt.Errorf("%s of %d bytes exceeds the limit of %d", what, n, limit)
	case n > len(s):
		return "", s, fmt.Errorf("%s of %d bytes, but only %d left", what, n, len(s))
	case n == 0:
		return "", s, nil // not an empty substring pinning the body
	}
	return s[:n], s[n:], nil
}

// checkFds is what both ends require of the descriptions in one fds frame.
func checkFds(metas []fdMeta) error {
	if len(metas) == 0 || len(metas) > maxFdsPerFrame {
		return protoErrorf("fds frame with %d descriptors (want 1 to %d)", len(metas), maxFdsPerFrame)
	}
	var names map[string]bool // most descriptors have no name
	for i, m := range metas {
		if err := m.validate(); err != nil {
			return protoErrorf("descriptor %d: %v", i, err)
		}
		if m.Name == "" {
			continue
		}
		if names[m.Name] {
			return protoErrorf("descriptor %d: name %q used twice", i, m.Name)
		}
		if names == nil {
			names = make(map[string]bool, len(metas)-i)
		}
		names[m.Name] = true
	}
	return nil
}

func (m fdMeta) validate() error {
	switch {
	case len(m.Name) > maxNameLen:
		return fmt.Errorf("name of %d bytes", len(m.Name))
	case len(m.Network) > maxNetworkLen:
		return fmt.Errorf("network of %d bytes", len(m.Network))
	case len(m.Address) > maxAddressLen || len(m.Actual) > maxAddressLen:
		return errors.New("address too long")
	}
	switch m.Kind {
	case kindFile:
		if m.Name == "" {
			return errors.New("file without a name")
		}
		return nil
	case kindListener, kindPacket, kindConn:
	default:
		return fmt.Errorf("unknown kind %q", m.Kind)
	}
	if m.Name == "" && m.Network == "" {
		return fmt.Errorf("%s with neither name nor network", m.Kind)
	}
	if m.Network != "" && !validNetwork(m.Kind, m.Network) {
		return fmt.Errorf("%s on unknown network %q", m.Kind, m.Network)
	}
	return nil
}

func validNetwork(k fdKind, network string) bool {
	switch network {
	case "tcp", "tcp4", "tcp6", "unix", "unixpacket":
		return k == kindListener || k == kindConn
	case "udp", "udp4", "udp6", "unixgram":
		return k == kindPacket || k == kindConn
	}
	return false
}

// encodeReady returns the body of a ready frame: pid u32.
func encodeReady(m readyMsg) ([]byte, error) {
	if err := checkReady(int64(m.PID)); err != nil {
		return nil, err
	}
	return binary.BigEndian.AppendUint32(make([]byte, 0, readyLen), uint32(m.PID)), nil
}

func parseReady(body []byte) (readyMsg, error) {
	if len(body) != readyLen {
		return readyMsg{}, bodyLenError(frameReady, len(body), readyLen)
	}
	pid := binary.BigEndian.Uint32(body)
	if err := checkReady(int64(pid)); err != nil {
		return readyMsg{}, err
	}
	return readyMsg{PID: int(pid)}, nil
}

func checkReady(pid int64) error {
	if pid < 1 || pid > math.MaxInt32 {
		return protoErrorf("ready from bad pid %d", pid)
	}
	return nil
}

// encodeAbort returns the body of an abort frame: the reason itself, cut
// to maxReasonLen bytes.
func encodeAbort(m abortMsg) []byte {
	return []byte(reasonText(m.Reason))
}

// parseAbort never fails: a reason is only ever reported, so a long one is
// cut, as the sender should have done, rather than refused.
func parseAbort(body []byte) abortMsg {
	return abortMsg{Reason: reasonText(string(body))}
}

// reasonText makes s fit for an abort reason, which ends up in errors and
// logs: valid UTF-8 (invalid bytes become U+FFFD) of at most maxReasonLen
// bytes, cut between characters.
func reasonText(s string) string {
	return truncate(strings.ToValidUTF8(s, "\uFFFD"), maxReasonLen)
}

// encodeAck returns the body of an ack frame: the successor's probation
// u32, in milliseconds, rounded up so that a probation is never sent as
// none; 0 for none.
func encodeAck(probation time.Duration) ([]byte, error) {
	if probation < 0 || probation > MaxProbation {
		return nil, protoErrorf("probation %v out of range (0 to %v)", probation, MaxProbation)
	}
	ms := (probation + time.Millisecond - 1) / time.Millisecond
	return binary.BigEndian.AppendUint32(make([]byte, 0, ackLen), uint32(ms)), nil
}

// parseAck returns the probation an ack frame announces, 0 for none.
func parseAck(body []byte) (time.Duration, error) {
	if len(body) != ackLen {
		return 0, bodyLenError(frameAck, len(body), ackLen)
	}
	return time.Duration(binary.BigEndian.Uint32(body)) * time.Millisecond, nil
}

// parsePassed checks the body of a passed frame, which is empty.
func parsePassed(body []byte) error { return parseEmpty(framePassed, body) }

// parseServing checks the body of a serving frame, which is empty.
func parseServing(body []byte) error { return parseEmpty(frameServing, body) }

func parseEmpty(typ byte, body []byte) error {
	if len(body) != 0 {
		return bodyLenError(typ, len(body), 0)
	}
	return nil
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// validName reports whether name can name a descriptor, a state blob or
// the connections handed under it: not empty, at most maxNameLen bytes,
// no ':' (LISTEN_FDNAMES separates names with it) and no NUL.
func validName(name string) bool {
	return name != "" && len(name) <= maxNameLen && !strings.ContainsAny(name, ":\x00")
}

// encodeState returns the body of a state frame: count u16, then per
// blob its name (u16 length and bytes) and value (u32 length and bytes),
// in ascending order of names, so that a set of blobs has one encoding.
func encodeState(blobs map[string][]byte) ([]byte, error) {
	if err := checkState(blobs); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(blobs))
	size := 2
	for name, v := range blobs {
		names = append(names, name)
		size += 2 + len(name) + 4 + len(v)
	}
	slices.Sort(names)
	b := make([]byte, 0, size)
	b = binary.BigEndian.AppendUint16(b, uint16(len(names)))
	for _, name := range names {
		b = binary.BigEndian.AppendUint16(b, uint16(len(name)))
		b = append(b, name...)
		b = binary.BigEndian.AppendUint32(b, uint32(len(blobs[name])))
		b = append(b, blobs[name]...)
	}
	return b, nil
}

// parseState decodes the body of a state frame. Names must come in
// strictly ascending order, which also refuses one used twice.
func parseState(body []byte) (map[string][]byte, error) {
	if len(body) < 2 {
		return nil, bodyLenError(frameState, len(body), 2)
	}
	n := int(binary.BigEndian.Uint16(body))
	if n > maxStateBlobs {
		return nil, protoErrorf("state frame with %d blobs exceeds the limit of %d", n, maxStateBlobs)
	}
	rest := body[2:]
	blobs := make(map[string][]byte, n)
	prev, total := "", 0
	for i := 0; i < n; i++ {
		name, r, err := cutName(rest)
		if err != nil {
			return nil, protoErrorf("state blob %d: %v", i, err)
		}
		rest = r
		if !validName(name) {
			return nil, protoErrorf("state blob %d: bad name %q", i, name)
		}
		if i > 0 && name <= prev {
			return nil, protoErrorf("state blob %d: name %q after %q (want ascending, each once)", i, name, prev)
		}
		v, r2, err := cutBlob(rest, "value", MaxState-total)
		if err != nil {
			return nil, protoErrorf("state blob %d (%q): %v", i, name, err)
		}
		rest = r2
		total += len(v)
		blobs[name] = v
		prev = name
	}
	if len(rest) > 0 {
		return nil, protoErrorf("V frame: %d bytes after the last blob", len(rest))
	}
	return blobs, nil
}

// cutName decodes a name (a u16 length and that many bytes) from the
// start of b and returns it and the rest. Only the name is converted to
// a string, not what follows it.
func cutName(b []byte) (name string, rest []byte, err error) {
	head := string(b[:min(len(b), 2+maxNameLen)])
	name, r, err := cutString(head, "name", maxNameLen)
	if err != nil {
		return "", b, err
	}
	return name, b[len(head)-len(r):], nil
}

// cutBlob decodes a u32 length and that many bytes, at most limit, from
// the start of b, and returns a copy of them and the rest. what names the
// field.
func cutBlob(b []byte, what string, limit int) (v, rest []byte, err error) {
	if len(b) < 4 {
		return nil, b, fmt.Errorf("truncated in the length of its %s", what)
	}
	n := binary.BigEndian.Uint32(b)
	b = b[4:]
	switch {
	case int64(n) > int64(limit):
		return nil, b, fmt.Errorf("%s of %d bytes exceeds the limit of %d", what, n, limit)
	case int64(n) > int64(len(b)):
		return nil, b, fmt.Errorf("%s of %d bytes, but only %d left", what, n, len(b))
	}
	// A copy: the caller keeps the blob, not the whole frame.
	return append([]byte{}, b[:n]...), b[n:], nil
}

// checkState is what both ends require of a generation's state blobs.
func checkState(blobs map[string][]byte) error {
	if len(blobs) > maxStateBlobs {
		return protoErrorf("%d state blobs exceed the limit of %d", len(blobs), maxStateBlobs)
	}
	total := 0
	for name, v := range blobs {
		if !validName(name) {
			return protoErrorf("bad state blob name %q", name)
		}
		total += len(v)
	}
	if total > MaxState {
		return protoErrorf("state blobs of %d bytes together exceed the limit of %d", total, MaxState)
	}
	return nil
}

// connMsg is one connection handed over the generation link.
type connMsg struct {
	// ID names it in the successor's answer; never 0.
	ID    uint32
	Name  string
	State []byte
}

// encodeConn returns the body of a conn frame: id u32, name (u16 length
// and bytes), state (u32 length and bytes).
func encodeConn(m connMsg) ([]byte, error) {
	if err := checkConn(m); err != nil {
		return nil, err
	}
	b := make([]byte, 0, 4+2+len(m.Name)+4+len(m.State))
	b = binary.BigEndian.AppendUint32(b, m.ID)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Name)))
	b = append(b, m.Name...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.State)))
	return append(b, m.State...), nil
}

func parseConn(body []byte) (connMsg, error) {
	if len(body) < 4 {
		return connMsg{}, bodyLenError(frameConn, len(body), 4)
	}
	m := connMsg{ID: binary.BigEndian.Uint32(body)}
	name, rest, err := cutName(body[4:])
	if err != nil {
		return connMsg{}, protoErrorf("conn %d: %v", m.ID, err)
	}
	m.Name = name
	if m.State, rest, err = cutBlob(rest, "state", MaxConnState); err != nil {
		return connMsg{}, protoErrorf("conn %d: %v", m.ID, err)
	}
	if len(rest) > 0 {
		return connMsg{}, protoErrorf("C frame: %d bytes after the state", len(rest))
	}
	if err := checkConn(m); err != nil {
		return connMsg{}, err
	}
	return m, nil
}

func checkConn(m connMsg) error {
	switch {
	case m.ID == 0:
		return protoErrorf("conn with id 0")
	case !validName(m.Name):
		return protoErrorf("conn %d: bad name %q", m.ID, m.Name)
	case len(m.State) > MaxConnState:
		return protoErrorf("conn %d: state of %d bytes exceeds the limit of %d", m.ID, len(m.State), MaxConnState)
	}
	return nil
}

// encodeConnAck returns the body of a connAck frame: id u32.
func encodeConnAck(id uint32) ([]byte, error) {
	if id == 0 {
		return nil, protoErrorf("conn ack for id 0")
	}
	return binary.BigEndian.AppendUint32(make([]byte, 0, connAckLen), id), nil
}

func parseConnAck(body []byte) (uint32, error) {
	if len(body) != connAckLen {
		return 0, bodyLenError(frameConnAck, len(body), connAckLen)
	}
	id := binary.BigEndian.Uint32(body)
	if id == 0 {
		return 0, protoErrorf("conn ack for id 0")
	}
	return id, nil
}

// connRefuseMsg: the successor refuses connection ID, which stays the
// incumbent's.
type connRefuseMsg struct {
	ID     uint32
	Reason string
}

// encodeConnRefuse returns the body of a connRefuse frame: id u32, then
// the reason, the rest of the body, mended as an abort's.
func encodeConnRefuse(m connRefuseMsg) ([]byte, error) {
	if m.ID == 0 {
		return nil, protoErrorf("conn refusal for id 0")
	}
	b := binary.BigEndian.AppendUint32(nil, m.ID)
	return append(b, reasonText(m.Reason)...), nil
}

// parseConnRefuse is strict about the id and, like parseAbort, takes the
// reason as it comes, cut and mended.
func parseConnRefuse(body []byte) (connRefuseMsg, error) {
	if len(body) < 4 {
		return connRefuseMsg{}, bodyLenError(frameConnRefuse, len(body), 4)
	}
	id := binary.BigEndian.Uint32(body)
	if id == 0 {
		return connRefuseMsg{}, protoErrorf("conn refusal for id 0")
	}
	return connRefuseMsg{ID: id, Reason: reasonText(string(body[4:]))}, nil
}

// The successor learns where its end of the socketpair is from one private
// environment variable, BATON_HANDOFF=<fd>:<incumbent pid>. The pid guards
// against a stray copy of the variable: only a direct child of the incumbent
// treats the descriptor as a handoff.
const envHandoff = "BATON_HANDOFF"

func formatHandoffEnv(fd, ppid int) string {
	return envHandoff + "=" + strconv.Itoa(fd) + ":" + strconv.Itoa(ppid)
}

func parseHandoffEnv(v string) (fd, ppid int, err error) {
	fdStr, pidStr, ok := strings.Cut(v, ":")
	if !ok {
		return 0, 0, fmt.Errorf("baton: %s=%q: want <fd>:<pid>", envHandoff, v)
	}
	fd, err1 := strconv.Atoi(fdStr)
	ppid, err2 := strconv.Atoi(pidStr)
	if err1 != nil || err2 != nil || fd < 3 || fd > 1<<20 || ppid < 1 {
		return 0, 0, fmt.Errorf("baton: %s=%q: want <fd>:<pid>", envHandoff, v)
	}
	return fd, ppid, nil
}
