package baton

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The handoff protocol, spoken over one end of a Unix stream socketpair.
//
// Every message is a frame: a 5-byte header (1 byte type, 4 bytes big-endian
// body length) followed by the body. Bodies are JSON. A frame of type
// frameFds carries file descriptors as SCM_RIGHTS attached to its first byte;
// its body describes exactly those descriptors, in order.
//
//	incumbent → successor   hello{version, generation, pid, fds}
//	incumbent → successor   fds[...] × ceil(fds/maxFdsPerFrame), each with SCM_RIGHTS
//	successor → incumbent   ready{pid}        or abort{reason}
//	incumbent → successor   ack{}             the incumbent has committed and drains
//
// EOF on the socket means the peer is gone. Anything malformed is an error:
// the successor aborts, the incumbent kills the successor and keeps serving.

const (
	protocolVersion = 1

	frameHello = 'H'
	frameFds   = 'F'
	frameReady = 'R'
	frameAbort = 'X'
	frameAck   = 'A'

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
)

// fdKind says what an inherited descriptor is, so the successor can rebuild
// the right Go value around it.
type fdKind string

const (
	kindListener fdKind = "listener" // net.Listener
	kindPacket   fdKind = "packet"   // net.PacketConn
	kindConn     fdKind = "conn"     // net.Conn
	kindFile     fdKind = "file"     // *os.File
)

// fdMeta describes one passed descriptor.
type fdMeta struct {
	// Name is set for descriptors added with Add; empty for Listen and
	// ListenPacket sockets, which are found by network and address.
	Name    string `json:"name,omitempty"`
	Kind    fdKind `json:"kind"`
	Network string `json:"network,omitempty"`
	// Address is what the application asked for ("127.0.0.1:0");
	// Actual is what the socket is bound to ("127.0.0.1:43521").
	Address string `json:"address,omitempty"`
	Actual  string `json:"actual,omitempty"`
}

type helloMsg struct {
	Version    int `json:"version"`
	Generation int `json:"generation"`
	PID        int `json:"pid"`
	Fds        int `json:"fds"`
}

type readyMsg struct {
	PID int `json:"pid"`
}

type abortMsg struct {
	Reason string `json:"reason"`
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
func encodeFrame(typ byte, v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
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
	case frameHello, frameFds, frameReady, frameAbort, frameAck:
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

func decodeJSON(typ byte, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return protoErrorf("%c frame: %v", typ, err)
	}
	return nil
}

func parseHello(body []byte) (helloMsg, error) {
	var m helloMsg
	if err := decodeJSON(frameHello, body, &m); err != nil {
		return m, err
	}
	switch {
	case m.Version != protocolVersion:
		return m, protoErrorf("incumbent speaks version %d, this binary speaks %d", m.Version, protocolVersion)
	case m.Generation < 1:
		return m, protoErrorf("bad generation %d", m.Generation)
	case m.PID < 1:
		return m, protoErrorf("bad incumbent pid %d", m.PID)
	case m.Fds < 0 || m.Fds > maxFds:
		return m, protoErrorf("bad descriptor count %d", m.Fds)
	}
	return m, nil
}

// parseFds decodes the body of an fds frame that arrived with nfds
// descriptors and checks that it describes exactly those.
func parseFds(body []byte, nfds int) ([]fdMeta, error) {
	var metas []fdMeta
	if err := decodeJSON(frameFds, body, &metas); err != nil {
		return nil, err
	}
	if len(metas) != nfds {
		return nil, protoErrorf("fds frame describes %d descriptors but carried %d", len(metas), nfds)
	}
	if nfds == 0 || nfds > maxFdsPerFrame {
		return nil, protoErrorf("fds frame with %d descriptors (want 1 to %d)", nfds, maxFdsPerFrame)
	}
	names := map[string]bool{}
	for i, m := range metas {
		if err := m.validate(); err != nil {
			return nil, protoErrorf("descriptor %d: %v", i, err)
		}
		if m.Name != "" {
			if names[m.Name] {
				return nil, protoErrorf("descriptor %d: name %q used twice", i, m.Name)
			}
			names[m.Name] = true
		}
	}
	return metas, nil
}

func (m fdMeta) validate() error {
	switch {
	case len(m.Name) > maxNameLen:
		return fmt.Errorf("name of %d bytes", len(m.Name))
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

func parseReady(body []byte) (readyMsg, error) {
	var m readyMsg
	if err := decodeJSON(frameReady, body, &m); err != nil {
		return m, err
	}
	if m.PID < 1 {
		return m, protoErrorf("ready from bad pid %d", m.PID)
	}
	return m, nil
}

func parseAbort(body []byte) (abortMsg, error) {
	var m abortMsg
	if err := decodeJSON(frameAbort, body, &m); err != nil {
		return m, err
	}
	m.Reason = truncate(m.Reason, maxReasonLen)
	return m, nil
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
