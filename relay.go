//go:build linux || darwin

package baton

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
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
// both live. A datagram for a generation two or more away travels from
// neighbour to neighbour. Each hop moves it strictly toward its
// generation, and a generation refuses one that came from the wrong side,
// so no datagram ever loops.
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
	Sent uint64
	// PassedOn counts the datagrams of Sent that another generation
	// relayed for a third one.
	PassedOn uint64
	// Received counts datagrams delivered to a RelayedPackets queue.
	Received uint64
	// DroppedGone counts datagrams for a generation no link leads to:
	// it has exited, or never was.
	DroppedGone uint64
	// DroppedFull counts datagrams that found a relay socket's buffer
	// or a RelayedPackets queue full.
	DroppedFull uint64
	// DroppedUnclaimed counts datagrams for a channel this generation
	// never asked for with RelayedPackets.
	DroppedUnclaimed uint64
	// DroppedMalformed counts datagrams that could not be relayed as
	// they were: larger than MaxRelayedPacket, empty, or, from another
	// generation, malformed or from the wrong side.
	DroppedMalformed uint64
}

// RelayPacket passes b, a datagram that arrived from from, to generation
// gen, on channel (a name: at most 255 bytes, no ':'), where the
// application reads it from RelayedPackets(channel). It goes over the
// relay sockets between neighbouring generations: toward older
// generations through the predecessor, toward newer ones through the
// successor, each passing it on until it reaches gen.
//
// It copies b and never blocks. It returns nil once the datagram is on its
// way, which does not mean it arrives: a generation on the way may drop it,
// as the network may. Otherwise the datagram is dropped, counted in
// RelayStats, and the error wraps ErrRelayDropped and says why: no
// generation gen lives in that direction, the relay socket is full, or b
// is empty or larger than MaxRelayedPacket. gen must not be this
// generation's.
func (u *Upgrader) RelayPacket(channel string, gen int, from netip.AddrPort, b []byte) error {
	if !validName(channel) {
		return fmt.Errorf("baton: RelayPacket: bad channel %q", channel)
	}
	r := u.relays()
	if gen == r.gen {
		return fmt.Errorf("baton: RelayPacket: generation %d is this one", gen)
	}
	msg, err := encodeRelayed(relayMsg{Gen: gen, Channel: channel, From: from, Data: b})
	if err != nil {
		r.droppedMalformed.Add(1)
		return fmt.Errorf("%w: %w", ErrRelayDropped, err)
	}
	if err := r.send(gen, msg); err != nil {
		return fmt.Errorf("%w: for generation %d: %w", ErrRelayDropped, gen, err)
	}
	return nil
}

// RelayedPackets returns the queue of datagrams other generations relayed
// to this one on channel: the same channel on every call, never closed. It
// holds at most 1024 datagrams: read it promptly. Datagrams for a channel
// nobody asked for, or that find its queue full, are dropped and counted.
// Ask before Ready: a predecessor relays from the moment this generation
// is ready.
func (u *Upgrader) RelayedPackets(channel string) (<-chan RelayedPacket, error) {
	if !validName(channel) {
		return nil, fmt.Errorf("baton: RelayedPackets: bad channel %q", channel)
	}
	return u.relays().queue(channel), nil
}

// RelayStats counts what this generation relayed, passed on, received and
// dropped.
func (u *Upgrader) RelayStats() RelayStats {
	r := u.relays()
	return RelayStats{
		Sent:             r.sent.Load(),
		PassedOn:         r.passedOn.Load(),
		Received:         r.received.Load(),
		DroppedGone:      r.droppedGone.Load(),
		DroppedFull:      r.droppedFull.Load(),
		DroppedUnclaimed: r.droppedUnclaimed.Load(),
		DroppedMalformed: r.droppedMalformed.Load(),
	}
}

// relays returns this generation's relay, made on first use: the
// generation number is settled by then (New).
func (u *Upgrader) relays() *relay {
	u.relayOnce.Do(func() {
		u.relay = &relay{gen: u.gen, log: u.log, queues: make(map[string]chan RelayedPacket)}
	})
	return u.relay
}

// relay is this generation's end of the relay sockets to its neighbours.
type relay struct {
	gen int
	log *slog.Logger

	mu     sync.Mutex
	older  *relayLink // to the predecessor, while it lives
	newer  *relayLink // to the successor, while it lives
	queues map[string]chan RelayedPacket

	sent, passedOn, received                                     atomic.Uint64
	droppedGone, droppedFull, droppedUnclaimed, droppedMalformed atomic.Uint64
}

// relayLink is one relay socket.
type relayLink struct {
	conn *net.UnixConn
	rc   syscall.RawConn
}

// side is where a relay link leads.
type side bool

const (
	toOlder side = false
	toNewer side = true
)

func (s side) String() string {
	if s == toNewer {
		return "successor"
	}
	return "predecessor"
}

// queue returns channel's queue, made on first use.
func (r *relay) queue(channel string) chan RelayedPacket {
	r.mu.Lock()
	defer r.mu.Unlock()
	q, ok := r.queues[channel]
	if !ok {
		q = make(chan RelayedPacket, relayQueueLen)
		r.queues[channel] = q
	}
	return q
}

// attach makes conn the relay link to the neighbour on side s, replacing
// (and closing) any earlier one, and reads it until it ends.
func (r *relay) attach(s side, conn *net.UnixConn) {
	rc, err := conn.SyscallConn()
	if err != nil {
		conn.Close()
		return
	}
	// Best effort: the kernel caps it, and the default still works.
	rc.Control(func(fd uintptr) {
		unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, relaySendBuf)
	})
	l := &relayLink{conn: conn, rc: rc}
	r.mu.Lock()
	old := r.link(s)
	r.setLink(s, l)
	r.mu.Unlock()
	if old != nil {
		old.conn.Close()
	}
	go r.read(s, l)
}

func (r *relay) link(s side) *relayLink {
	if s == toNewer {
		return r.newer
	}
	return r.older
}

func (r *relay) setLink(s side, l *relayLink) {
	if s == toNewer {
		r.newer = l
	} else {
		r.older = l
	}
}

// read routes what the neighbour on side s relays until the link ends:
// the neighbour exited, or it was replaced.
func (r *relay) read(s side, l *relayLink) {
	defer func() {
		r.mu.Lock()
		if r.link(s) == l {
			r.setLink(s, nil)
		}
		r.mu.Unlock()
		l.conn.Close()
	}()
	buf := make([]byte, maxRelayMsg+1)
	for {
		n, _, flags, _, err := l.conn.ReadMsgUnix(buf, nil)
		if err != nil {
			return
		}
		if n == 0 {
			// EOF (SOCK_SEQPACKET): the neighbour exited. No relay
			// message is empty. (A SOCK_DGRAM pair on macOS has no EOF:
			// its reader ends when the link is replaced or at exit,
			// and sends to a gone neighbour fail as ECONNREFUSED.)
			return
		}
		if flags&unix.MSG_TRUNC != 0 {
			r.droppedMalformed.Add(1)
			continue
		}
		m, err := parseRelayed(buf[:n])
		if err == nil && !s.towardUs(m.Gen, r.gen) {
			err = fmt.Errorf("datagram for generation %d came from the %s of generation %d", m.Gen, s, r.gen)
		}
		if err != nil {
			r.droppedMalformed.Add(1)
			r.log.Debug("dropped a relayed datagram", "from", s.String(), "err", err)
			continue
		}
		if m.Gen == r.gen {
			r.deliver(m)
			continue
		}
		// Onward, away from where it came: toward older if it came
		// from the successor, toward newer if from the predecessor.
		if r.send(m.Gen, buf[:n]) == nil {
			r.passedOn.Add(1)
		}
	}
}

// towardUs reports whether a datagram for generation gen, arriving from
// the neighbour on side s of generation self, moved toward gen: from the
// successor only datagrams for this generation or older ones come, from
// the predecessor only ones for this generation or newer ones.
func (s side) towardUs(gen, self int) bool {
	if s == toNewer {
		return gen <= self
	}
	return gen >= self
}

// deliver queues m for the application, or drops it.
func (r *relay) deliver(m relayMsg) {
	r.mu.Lock()
	q, ok := r.queues[m.Channel]
	r.mu.Unlock()
	if !ok {
		r.droppedUnclaimed.Add(1)
		return
	}
	// A copy: m.Data is the reader's buffer.
	select {
	case q <- RelayedPacket{From: m.From, Data: append([]byte(nil), m.Data...)}:
		r.received.Add(1)
	default:
		r.droppedFull.Add(1)
	}
}

// errRelayFull and errRelayGone say why send dropped a datagram.
var (
	errRelayFull = errors.New("the relay socket is full")
	errRelayGone = errors.New("no generation lives in that direction")
)

// send puts msg, a datagram for generation gen, on the link toward it,
// or drops and counts it.
func (r *relay) send(gen int, msg []byte) error {
	s := toOlder
	if gen > r.gen {
		s = toNewer
	}
	r.mu.Lock()
	l := r.link(s)
	r.mu.Unlock()
	if l == nil {
		r.droppedGone.Add(1)
		return fmt.Errorf("%w (the %s)", errRelayGone, s)
	}
	var werr error
	err := l.rc.Write(func(fd uintptr) bool {
		// One message, written whole or not at all; never wait for
		// room: a datagram late by a wait is as good as lost.
		_, werr = unix.Write(int(fd), msg)
		return true
	})
	if err == nil {
		err = werr
	}
	switch {
	case err == nil:
		r.sent.Add(1)
		return nil
	case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.ENOBUFS):
		r.droppedFull.Add(1)
		return errRelayFull
	default:
		// Closed, EPIPE, ECONNREFUSED: the neighbour is gone.
		r.droppedGone.Add(1)
		return fmt.Errorf("%w (the %s: %w)", errRelayGone, s, os.NewSyscallError("write", err))
	}
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

// relayPair returns a new relay socket: this generation's end, and the
// descriptor of the end to pass to the predecessor with ready.
func relayPair() (*net.UnixConn, *os.File, error) {
	return socketpairOf(relaySockType)
}

// relayConn adopts the relay socket a successor passed with its ready
// frame, checking that it is one.
func relayConn(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "baton-relay")
	defer f.Close()
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, protoErrorf("the relay socket: %v", os.NewSyscallError("getsockopt", err))
	}
	if typ != relaySockType {
		return nil, protoErrorf("the relay socket is of type %d, want %d", typ, relaySockType)
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, protoErrorf("the relay socket: %v", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, protoErrorf("the relay socket is not a Unix socket")
	}
	return uc, nil
}
