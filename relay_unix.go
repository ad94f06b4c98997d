//go:build linux || darwin

package baton

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// RelayPacket passes b, a datagram that arrived from the address from, to
// generation gen, on channel (a name: at most 255 bytes, no ':'), where the
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
		if err != nil {
			r.droppedMalformed.Add(1)
			r.log.Debug("dropped a malformed relayed datagram", "from", s.String(), "err", err)
			continue
		}
		if !s.towardUs(m.Gen, r.gen) {
			// For a generation on the side it came from: one that
			// stopped and passed its relay socket on (spliceRelay)
			// while the datagram was on its way to it. Passing it
			// back could loop.
			r.droppedGone.Add(1)
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
	// Counted first: whoever reads the queue may look at the counts
	// before this goroutine runs again. A copy: m.Data is the reader's
	// buffer.
	r.received.Add(1)
	select {
	case q <- RelayedPacket{From: m.From, Data: append([]byte(nil), m.Data...)}:
	default:
		r.received.Add(^uint64(0))
		r.droppedFull.Add(1)
	}
}

// spliceRelay passes this stopping generation's relay socket to its
// predecessor on to its successor, over the generation link, so that the
// two relay to each other directly once this generation is gone; without
// it, the predecessor's datagrams would have no way left to it. Datagrams
// this generation still holds are lost with it, as a network path that
// changes loses some.
func (u *Upgrader) spliceRelay() {
	u.mu.Lock()
	s := u.successor
	u.mu.Unlock()
	if s == nil || s.link == nil {
		return
	}
	select {
	case <-s.link.done:
		return // the successor is gone: nobody to join
	default:
	}
	r := u.relays()
	r.mu.Lock()
	l := r.older
	r.older = nil
	r.mu.Unlock()
	if l == nil {
		return // no predecessor, or it is gone
	}
	defer l.conn.Close() // ours; the successor has its own now
	frame, err := encodeFrame(frameRelay, nil)
	if err != nil {
		return
	}
	// The successor reads the link all along: a second is plenty for
	// five bytes. One that does not take them has no way to the
	// predecessor, which then counts its datagrams as gone.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := s.link.send(ctx, frame, l.rc); err != nil {
		u.log.Warn("passing the relay socket on to the successor; datagrams for older generations are dropped from now on", "generation", u.gen, "err", err)
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
