package baton

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
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
//	successor → incumbent   ready{pid}        or abort{reason}
//	incumbent → successor   ack{}             the incumbent has committed and drains
//	successor → incumbent   serving{}         the PID file and control socket name it now
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
	protocolVersion = 1

	frameHello = 'H'
	frameFds   = 'F'
	frameReady = 'R'
	frameAbort = 'X'
	frameAck   = 'A'

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

	// Body sizes of the fixed-layout frames.
	helloLen = 2 + 4 + 4 + 4 // version u16, generation u32, pid u32, fds u32
	readyLen = 4             // pid u32
)

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
	case frameHello, frameFds, frameReady, frameAbort, frameAck, frameServing, frameTakeover:
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

// parseAck checks the body of an ack frame, which is empty.
func parseAck(body []byte) error { return parseEmpty(frameAck, body) }

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
