package quicroute

import (
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

	"github.com/batonhq/baton"
)

// Relay is what a Router needs of its generation: *baton.Upgrader.
type Relay interface {
	Generation() int
	Exit() <-chan struct{}
	RelayPacket(channel string, gen int, from netip.AddrPort, b []byte) error
	RelayedPackets(channel string) (<-chan baton.RelayedPacket, error)
	// HandedOver says, once Exit is closed, whether a successor took
	// over (true) or this is the final stop.
	HandedOver() bool
}

// DefaultChannel is the relay channel a Router uses unless told otherwise.
const DefaultChannel = "quic"

// DefaultQueue bounds the datagrams read from the socket and not yet read
// by quic-go. quic-go reads as fast as it can and queues packets per
// connection itself; this only absorbs a burst while it is busy, and
// 1024 datagrams of at most 1,452 bytes (what quic-go sends) is ~1.5 MB,
// about a default socket receive buffer.
const DefaultQueue = 1024

// Options configures a Router. The zero value works.
type Options struct {
	// Channel is the relay channel the generations pass this socket's
	// datagrams on: one per socket if a process routes several. Defaults
	// to DefaultChannel.
	Channel string
	// Queue bounds the datagrams waiting for quic-go; a datagram that
	// finds it full is dropped and counted (QUIC retransmits). Defaults
	// to DefaultQueue.
	Queue int
	// Logger, if not nil, logs the router's stop and its figures.
	Logger *slog.Logger
}

// Stats counts what a Router did with the datagrams it saw.
type Stats struct {
	Own          uint64 // read from the socket, for this generation
	Relayed      uint64 // read from the socket, relayed to the generation they belong to
	RelayDropped uint64 // read from the socket for another generation, which RelayPacket refused (gone, or its queue full)
	Received     uint64 // relayed to this generation by another
	QueueDropped uint64 // dropped: the queue to quic-go was full
	ReadErrors   uint64 // errors reading the socket that did not stop the router (ICMP errors Linux reports on UDP)
}

// Router is the net.PacketConn a generation gives quic.Transport instead
// of its UDP socket. One goroutine reads the socket and routes each
// datagram (Classify): this generation's go to quic-go, another's are
// relayed to it over the generation links; datagrams other generations
// relay to this one are merged into what quic-go reads. Writes go straight
// to the socket, which every generation holds: an old generation answers
// its clients from its own copy.
//
// Once Exit is closed and a successor serves, the Router stops reading the
// socket, since every process that reads a shared UDP socket takes
// datagrams from the same queue, and lives on what the newer generations
// relay to it; a new connection's datagram it read in that race goes to
// the successor.
type Router struct {
	conn    *net.UDPConn
	relay   Relay
	channel string
	gen     uint32
	log     *slog.Logger

	in       chan packet                // from the reader to ReadFrom
	relayed  <-chan baton.RelayedPacket // from other generations to ReadFrom
	closed   chan struct{}              // closed by Close
	readDone chan struct{}              // closed when the reader returns
	once     sync.Once
	// retired: a successor took over; a datagram read now is routed as
	// its world has it, and the socket is its to read.
	retired atomic.Bool

	dlMu     sync.Mutex
	deadline time.Time     // the read deadline; zero: none
	dlTimer  *time.Timer   // closes dlC when deadline passes
	dlC      chan struct{} // closed when the deadline passes or changes

	own, relayedOut, relayDropped, received, queueDropped, readErrors atomic.Uint64
}

type packet struct {
	from netip.AddrPort
	data []byte
}

// NewRouter routes the datagrams of conn, a UDP socket from
// baton.Upgrader.ListenPacket, for r's generation. Call it before Ready:
// the predecessor relays datagrams from the moment this generation is
// ready, and reads the socket no more. The Router owns conn: Close closes
// it. Use r's generation's CIDGenerator (NewCIDGenerator) as
// the Transport's ConnectionIDGenerator.
func NewRouter(r Relay, conn net.PacketConn, o Options) (*Router, error) {
	uc, ok := conn.(*net.UDPConn)
	if !ok {
		return nil, fmt.Errorf("quicroute: NewRouter: %T is not a UDP socket", conn)
	}
	gen := r.Generation()
	if gen < 1 || gen > 1<<32-1 {
		return nil, fmt.Errorf("quicroute: NewRouter: generation %d out of range", gen)
	}
	if o.Channel == "" {
		o.Channel = DefaultChannel
	}
	if o.Queue <= 0 {
		o.Queue = DefaultQueue
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	relayed, err := r.RelayedPackets(o.Channel)
	if err != nil {
		return nil, fmt.Errorf("quicroute: NewRouter: %w", err)
	}
	rt := &Router{
		conn:     uc,
		relay:    r,
		channel:  o.Channel,
		gen:      uint32(gen),
		log:      log,
		in:       make(chan packet, o.Queue),
		relayed:  relayed,
		closed:   make(chan struct{}),
		readDone: make(chan struct{}),
		dlC:      make(chan struct{}),
	}
	go rt.read()
	go rt.watchExit()
	return rt, nil
}

// CIDGenerator returns the generator of this generation's connection IDs.
func (r *Router) CIDGenerator() *CIDGenerator { return NewCIDGenerator(r.gen) }

// Stats returns the Router's counts so far.
func (r *Router) Stats() Stats {
	return Stats{
		Own:          r.own.Load(),
		Relayed:      r.relayedOut.Load(),
		RelayDropped: r.relayDropped.Load(),
		Received:     r.received.Load(),
		QueueDropped: r.queueDropped.Load(),
		ReadErrors:   r.readErrors.Load(),
	}
}

// watchExit stops the reader when a successor takes over: the deadline
// unblocks its read at once. It is this process's deadline on its own
// descriptor; the other generations' reads go on. On the final stop nobody
// else reads the socket, and the reader goes on until Close, for the
// drain.
func (r *Router) watchExit() {
	select {
	case <-r.relay.Exit():
	case <-r.closed:
		return
	}
	if !r.relay.HandedOver() {
		return
	}
	r.retired.Store(true)
	r.conn.SetReadDeadline(time.Now())
}

// read is the one reader of the socket in this process.
func (r *Router) read() {
	defer close(r.readDone)
	// The largest UDP payload: a datagram is never truncated here, so one
	// relayed is whole (quic-go reads at most 1,452 of it).
	buf := make([]byte, baton.MaxRelayedPacket)
	for {
		n, from, err := r.conn.ReadFromUDPAddrPort(buf)
		if err == nil {
			// A datagram read in the race with a successor's takeover
			// is routed as the successor's world has it; the next read
			// fails at once.
			r.route(buf[:n], from, r.retired.Load())
			continue
		}
		select {
		case <-r.closed:
			return
		default:
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if r.retired.Load() {
			r.log.Debug("quicroute: a successor serves: no longer reading the socket")
			return
		}
		// Linux reports an ICMP port unreachable from an earlier
		// write as an error on the next read of an unconnected UDP
		// socket; the socket is fine.
		r.readErrors.Add(1)
	}
}

// route passes one datagram read from the socket to quic-go or to the
// generation it belongs to.
func (r *Router) route(b []byte, from netip.AddrPort, retired bool) {
	route, gen := Classify(b, CIDLen)
	if route == NewestOrNamed && gen != 0 && (gen < r.gen || gen == r.gen+1) {
		// A handshake continuing with the generation its ID names, if
		// that one lives; otherwise a new connection. Only an older
		// generation or the successor can have issued an ID: one that
		// names any other is a client's random choice.
		if r.relay.RelayPacket(r.channel, int(gen), from, b) == nil {
			r.relayedOut.Add(1)
			return
		}
		route = Newest
	}
	to := r.gen
	switch route {
	case Newest:
		if retired {
			// A new connection, read after a successor took over: it
			// is the successor's.
			to = r.gen + 1
		}
	case Named:
		to = gen
	}
	if to == r.gen {
		r.deliver(b, from)
		return
	}
	if err := r.relay.RelayPacket(r.channel, int(to), from, b); err != nil {
		// Dropped and counted by the relay too: a generation that is
		// gone, or a full link. QUIC retransmits; a connection whose
		// generation is gone was closed by it.
		r.relayDropped.Add(1)
		return
	}
	r.relayedOut.Add(1)
}

// deliver queues a datagram for this generation's quic-go.
func (r *Router) deliver(b []byte, from netip.AddrPort) {
	select {
	case r.in <- packet{from: from, data: append([]byte(nil), b...)}:
		r.own.Add(1)
	default:
		r.queueDropped.Add(1)
	}
}

// ReadFrom returns the next datagram for this generation: read from the
// socket, or relayed by another generation.
func (r *Router) ReadFrom(p []byte) (int, net.Addr, error) {
	relayed := r.relayed
	for {
		r.dlMu.Lock()
		dl, dlC := r.deadline, r.dlC
		r.dlMu.Unlock()
		if !dl.IsZero() && !time.Now().Before(dl) {
			return 0, nil, r.opError("read", os.ErrDeadlineExceeded)
		}
		var pk packet
		select {
		case pk = <-r.in:
		case rp, ok := <-relayed:
			if !ok {
				// The relay is done: nothing more will come that
				// way; the socket's datagrams still may.
				relayed = nil
				continue
			}
			r.received.Add(1)
			pk = packet{from: rp.From, data: rp.Data}
		case <-r.closed:
			return 0, nil, r.opError("read", net.ErrClosed)
		case <-dlC:
			// The deadline passed or changed: look again.
			continue
		}
		n := copy(p, pk.data)
		return n, net.UDPAddrFromAddrPort(pk.from), nil
	}
}

func (r *Router) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "udp", Addr: r.conn.LocalAddr(), Err: err}
}

// WriteTo writes to the socket.
func (r *Router) WriteTo(p []byte, addr net.Addr) (int, error) {
	return r.conn.WriteTo(p, addr)
}

// Close stops the reader and closes this process's copy of the socket;
// the other generations' copies are theirs.
func (r *Router) Close() error {
	err := net.ErrClosed
	r.once.Do(func() {
		close(r.closed)
		err = r.conn.Close()
		<-r.readDone
		r.dlMu.Lock()
		if r.dlTimer != nil {
			r.dlTimer.Stop()
		}
		r.dlMu.Unlock()
		s := r.Stats()
		r.log.Debug("quicroute: router closed", "own", s.Own, "relayed", s.Relayed, "received", s.Received,
			"relay_dropped", s.RelayDropped, "queue_dropped", s.QueueDropped)
	})
	return err
}

// LocalAddr is the socket's address.
func (r *Router) LocalAddr() net.Addr { return r.conn.LocalAddr() }

// SetDeadline sets the read deadline; writes go straight to the socket
// and are never held.
func (r *Router) SetDeadline(t time.Time) error { return r.SetReadDeadline(t) }

// SetReadDeadline bounds ReadFrom; quic.Transport.Close uses it to stop
// its reader.
func (r *Router) SetReadDeadline(t time.Time) error {
	r.dlMu.Lock()
	defer r.dlMu.Unlock()
	r.deadline = t
	if r.dlTimer != nil {
		r.dlTimer.Stop()
		r.dlTimer = nil
	}
	// Wake the readers waiting on the old deadline: they look again.
	closeOnce(r.dlC)
	r.dlC = make(chan struct{})
	if t.IsZero() {
		return nil
	}
	c := r.dlC
	r.dlTimer = time.AfterFunc(time.Until(t), func() {
		r.dlMu.Lock()
		defer r.dlMu.Unlock()
		if r.dlC == c {
			closeOnce(c)
		}
	})
	return nil
}

// closeOnce closes c unless it is closed; the caller holds dlMu.
func closeOnce(c chan struct{}) {
	select {
	case <-c:
	default:
		close(c)
	}
}

// SetWriteDeadline is a no-op: see SetDeadline.
func (r *Router) SetWriteDeadline(t time.Time) error { return nil }

// SyscallConn is the socket's: quic-go sets the Don't Fragment bit with it
// (path MTU discovery), as every generation does on the one socket.
func (r *Router) SyscallConn() (syscall.RawConn, error) { return r.conn.SyscallConn() }

// SetReadBuffer sets the socket's receive buffer, which every generation
// shares.
func (r *Router) SetReadBuffer(n int) error { return r.conn.SetReadBuffer(n) }

// SetWriteBuffer sets the socket's send buffer.
func (r *Router) SetWriteBuffer(n int) error { return r.conn.SetWriteBuffer(n) }

var _ net.PacketConn = (*Router)(nil)
