//go:build linux || darwin

package baton

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestRelayMessageCodec(t *testing.T) {
	v4 := netip.MustParseAddrPort("127.0.0.1:4433")
	v6 := netip.MustParseAddrPort("[2001:db8::1]:443")
	for _, m := range []relayMsg{
		{Gen: 1, Channel: "quic", From: v4, Data: []byte{0x40, 1, 2, 3}},
		{Gen: 1<<32 - 1, Channel: strings.Repeat("c", maxNameLen), From: v6, Data: bytes.Repeat([]byte{7}, MaxRelayedPacket)},
		{Gen: 7, Channel: "q", From: netip.MustParseAddrPort("[::ffff:10.0.0.1]:1"), Data: []byte{0}},
	} {
		b, err := encodeRelayed(m)
		if err != nil {
			t.Fatalf("encodeRelayed(gen %d, %q): %v", m.Gen, m.Channel, err)
		}
		got, err := parseRelayed(b)
		if err != nil {
			t.Fatalf("parseRelayed(encodeRelayed(gen %d)): %v", m.Gen, err)
		}
		if got.Gen != m.Gen || got.Channel != m.Channel || got.From != m.From || !bytes.Equal(got.Data, m.Data) {
			t.Errorf("round trip of gen %d %q %v (%d bytes) = gen %d %q %v (%d bytes)", m.Gen, m.Channel, m.From, len(m.Data), got.Gen, got.Channel, got.From, len(got.Data))
		}
	}

	for _, tc := range []struct {
		name string
		m    relayMsg
	}{
		{"generation 0", relayMsg{Gen: 0, Channel: "q", From: v4, Data: []byte{1}}},
		{"generation beyond u32", relayMsg{Gen: 1 << 32, Channel: "q", From: v4, Data: []byte{1}}},
		{"empty channel", relayMsg{Gen: 1, From: v4, Data: []byte{1}}},
		{"channel with a colon", relayMsg{Gen: 1, Channel: "a:b", From: v4, Data: []byte{1}}},
		{"channel too long", relayMsg{Gen: 1, Channel: strings.Repeat("c", maxNameLen+1), From: v4, Data: []byte{1}}},
		{"empty datagram", relayMsg{Gen: 1, Channel: "q", From: v4}},
		{"datagram too big", relayMsg{Gen: 1, Channel: "q", From: v4, Data: make([]byte, MaxRelayedPacket+1)}},
		{"no address", relayMsg{Gen: 1, Channel: "q", Data: []byte{1}}},
	} {
		if b, err := encodeRelayed(tc.m); err == nil {
			t.Errorf("encodeRelayed(%s) = %x, want an error", tc.name, b)
		}
	}

	good, _ := encodeRelayed(relayMsg{Gen: 2, Channel: "q", From: v4, Data: []byte{9, 9}})
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"nothing", nil},
		{"header only", good[:5]},
		{"generation 0", append([]byte{0, 0, 0, 0}, good[4:]...)},
		{"cut in the channel", good[:6]},
		{"cut before the family", good[:4+1+1]},
		{"family 5", append(append(append([]byte{}, good[:6]...), 5), good[7:]...)},
		{"cut in the address", good[:4+1+1+1+3]},
		{"cut in the port", good[:4+1+1+1+4+1]},
		{"no datagram", good[:4+1+1+1+4+2]},
		{"bad channel", append([]byte{0, 0, 0, 2, 1, ':'}, good[6:]...)},
		{"oversized datagram", append(append([]byte{}, good...), make([]byte, MaxRelayedPacket)...)},
	} {
		if m, err := parseRelayed(tc.b); err == nil {
			t.Errorf("parseRelayed(%s: %x) = gen %d %q, want an error", tc.name, tc.b, m.Gen, m.Channel)
		}
	}
}

// FuzzParseRelayed: the parser never panics, and what it accepts encodes
// back to exactly the same bytes (one encoding per message).
func FuzzParseRelayed(f *testing.F) {
	for _, m := range []relayMsg{
		{Gen: 1, Channel: "quic", From: netip.MustParseAddrPort("127.0.0.1:4433"), Data: []byte{0xc0, 0, 0, 0, 1}},
		{Gen: 42, Channel: "h3", From: netip.MustParseAddrPort("[::1]:50000"), Data: []byte{0x40, 0, 0, 0, 42, 1, 2, 3, 4, 5, 6, 7, 8}},
	} {
		b, err := encodeRelayed(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte{0, 0, 0, 1, 1, 'q', 6})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := parseRelayed(b)
		if err != nil {
			return
		}
		back, err := encodeRelayed(m)
		if err != nil {
			t.Fatalf("parseRelayed(%x) accepted gen %d %q %v, which encodeRelayed refuses: %v", b, m.Gen, m.Channel, m.From, err)
		}
		if !bytes.Equal(back, b) {
			t.Fatalf("parseRelayed(%x) then encodeRelayed = %x", b, back)
		}
	})
}

// relayEnds returns a relay of generation gen with a link on side s, and
// the neighbour's end of it.
func relayEnds(t *testing.T, gen int, s side) (*relay, *net.UnixConn) {
	t.Helper()
	ours, theirs, err := relayPair()
	if err != nil {
		t.Fatal(err)
	}
	peer, err := relayConn(dupOf(t, theirs))
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{gen: gen, log: slog.New(slog.DiscardHandler), queues: make(map[string]chan RelayedPacket)}
	r.attach(s, ours)
	t.Cleanup(func() { peer.Close() })
	return r, peer
}

// dupOf returns a duplicate of f's descriptor for relayConn, which takes
// it, and closes f.
func dupOf(t *testing.T, f *os.File) int {
	t.Helper()
	defer f.Close()
	fd, err := unix.Dup(int(f.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	return fd
}

func mustRelayMsg(t *testing.T, gen int, channel string, data string) []byte {
	t.Helper()
	b, err := encodeRelayed(relayMsg{Gen: gen, Channel: channel, From: netip.MustParseAddrPort("127.0.0.1:9"), Data: []byte(data)})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// waitStat waits for a count to reach want: the relay's reader runs on
// its own goroutine, and the counts are all it shows of a drop.
func waitStat(t *testing.T, what string, get func() uint64, want uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for get() < want {
		if time.Now().After(deadline) {
			t.Fatalf("%s = %d after 5s, want %d", what, get(), want)
		}
		time.Sleep(time.Millisecond)
	}
	if got := get(); got != want {
		t.Fatalf("%s = %d, want %d", what, got, want)
	}
}

// What a neighbour relays: delivered if for us, dropped and counted if it
// came from the wrong side, for a channel nobody asked for, malformed, or
// past a full queue.
func TestRelayReceives(t *testing.T) {
	r, older := relayEnds(t, 5, toOlder)
	q := r.queue("quic")

	send := func(b []byte) {
		t.Helper()
		if _, err := older.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	send(mustRelayMsg(t, 5, "quic", "for us"))
	select {
	case p := <-q:
		if string(p.Data) != "for us" || p.From != netip.MustParseAddrPort("127.0.0.1:9") {
			t.Errorf("delivered %q from %v, want %q from 127.0.0.1:9", p.Data, p.From, "for us")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a datagram for this generation was not delivered")
	}

	// From the predecessor, a datagram for an older generation came
	// from the wrong side: passing it back would loop.
	// (It was for a generation that stopped and passed its relay socket
	// on while the datagram was under way: gone.)
	send(mustRelayMsg(t, 4, "quic", "backwards"))
	waitStat(t, "DroppedGone after a datagram from the wrong side", r.droppedGone.Load, 1)
	send([]byte("garbage"))
	waitStat(t, "DroppedMalformed after garbage", r.droppedMalformed.Load, 1)
	send(mustRelayMsg(t, 5, "other", "nobody asked"))
	waitStat(t, "DroppedUnclaimed", r.droppedUnclaimed.Load, 1)
	// For a newer generation, with no successor to pass it to.
	send(mustRelayMsg(t, 6, "quic", "onward"))
	waitStat(t, "DroppedGone", r.droppedGone.Load, 2)

	for range relayQueueLen + 3 {
		send(mustRelayMsg(t, 5, "quic", "fill"))
	}
	waitStat(t, "DroppedFull once the queue is full", r.droppedFull.Load, 3)
	if got := r.received.Load(); got != relayQueueLen+1 {
		t.Errorf("Received = %d, want %d", got, relayQueueLen+1)
	}
	if len(q) != relayQueueLen {
		t.Errorf("queue holds %d, want %d", len(q), relayQueueLen)
	}
}

// A datagram passes through a middle generation, in each direction, and
// only toward its generation.
func TestRelayPassesOn(t *testing.T) {
	r, older := relayEnds(t, 5, toOlder)
	ours, theirs, err := relayPair()
	if err != nil {
		t.Fatal(err)
	}
	newer, err := relayConn(dupOf(t, theirs))
	if err != nil {
		t.Fatal(err)
	}
	defer newer.Close()
	r.attach(toNewer, ours)

	read := func(c *net.UnixConn) relayMsg {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b := make([]byte, maxRelayMsg)
		n, err := c.Read(b)
		if err != nil {
			t.Fatal(err)
		}
		m, err := parseRelayed(b[:n])
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	older.Write(mustRelayMsg(t, 7, "quic", "up"))
	if m := read(newer); m.Gen != 7 || string(m.Data) != "up" {
		t.Errorf("the successor got gen %d %q, want gen 7 %q", m.Gen, m.Data, "up")
	}
	newer.Write(mustRelayMsg(t, 2, "quic", "down"))
	if m := read(older); m.Gen != 2 || string(m.Data) != "down" {
		t.Errorf("the predecessor got gen %d %q, want gen 2 %q", m.Gen, m.Data, "down")
	}
	waitStat(t, "PassedOn", r.passedOn.Load, 2)
	if got := r.sent.Load(); got != 2 {
		t.Errorf("Sent = %d, want 2", got)
	}

	// The successor exits: a datagram for a newer generation has
	// nowhere to go. EOF ends the link, so the next send finds none.
	newer.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		r.mu.Lock()
		gone := r.newer == nil
		r.mu.Unlock()
		if gone {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the link to a successor that closed its end is still attached after 5s")
		}
		time.Sleep(time.Millisecond)
	}
	err = r.send(6, mustRelayMsg(t, 6, "quic", "lost"))
	if !errors.Is(err, errRelayGone) {
		t.Errorf("send toward a gone successor = %v, want errRelayGone", err)
	}
	if got := r.droppedGone.Load(); got != 1 {
		t.Errorf("DroppedGone = %d, want 1", got)
	}
}

// A neighbour that does not read: sends never block, and what does not
// fit is dropped as full.
func TestRelaySendNeverBlocks(t *testing.T) {
	r, _ := relayEnds(t, 5, toOlder)
	msg := mustRelayMsg(t, 4, "quic", strings.Repeat("x", 1200))
	start := time.Now()
	var full int
	for range 10000 {
		if err := r.send(4, msg); errors.Is(err, errRelayFull) {
			full++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if full == 0 {
		t.Fatal("10,000 datagrams of 1,200 bytes fit in a relay socket nobody reads; want some dropped as full")
	}
	if got := r.droppedFull.Load(); got != uint64(full) {
		t.Errorf("DroppedFull = %d, want %d", got, full)
	}
	t.Logf("%d of 10000 sent, %d dropped as full, in %v", r.sent.Load(), full, time.Since(start).Round(time.Millisecond))
}

// The relay socket a successor passes must be one: another type of
// socket is a protocol error, and its descriptor is closed.
func TestRelayConnChecksType(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	_, err = relayConn(fds[0])
	var perr *ProtocolError
	if !errors.As(err, &perr) {
		t.Fatalf("relayConn(a stream socket) = %v, want a *ProtocolError", err)
	}
	if _, err := unix.FcntlInt(uintptr(fds[0]), unix.F_GETFD, 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("the refused descriptor is still open (fcntl: %v)", err)
	}
}

// A successor of protocol version 4 passes the relay socket with ready:
// a ready without it, with two descriptors, or with a socket of another
// type, is a protocol error; with it, the handshake yields the socket.
func TestReadyCarriesRelaySocket(t *testing.T) {
	// Not parallel: it counts the process's descriptors.
	u := newTestUpgrader(t)
	stream := func() int {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fds[1])
		return fds[0]
	}
	relayEnd := func() int {
		ours, theirs, err := relayPair()
		if err != nil {
			t.Fatal(err)
		}
		ours.Close()
		return dupOf(t, theirs)
	}
	for _, tc := range []struct {
		name string
		fds  func() []int
		want string // "" for success
	}{
		{"no descriptor", func() []int { return nil }, "ready frame with 0 descriptors, want 1 (the relay socket)"},
		{"two descriptors", func() []int { return []int{relayEnd(), relayEnd()} }, "ready frame with 2 descriptors"},
		{"a stream socket", func() []int { return []int{stream()} }, "the relay socket is of type"},
		{"the relay socket", func() []int { return []int{relayEnd()} }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := socketPair(t)
			before := openFds()
			done := make(chan struct{})
			go func() {
				defer close(done)
				for {
					typ, _, fds, err := recvFrame(b)
					closeFds(fds)
					if err != nil {
						return
					}
					if typ == frameState {
						break
					}
				}
				body, _ := encodeReady(readyMsg{PID: os.Getpid()})
				frame, _ := encodeFrame(frameReady, body)
				fds := tc.fds()
				sendFrame(b, frame, fds)
				closeFds(fds)
			}()
			m, relay, err := (&child{conn: a}).handshake(2, u.reg.snapshot())
			if tc.want == "" {
				if err != nil || relay == nil || m.PID != os.Getpid() {
					t.Fatalf("handshake = pid %d, relay %v, %v; want pid %d and the relay socket", m.PID, relay, err, os.Getpid())
				}
				relay.Close()
			} else {
				var perr *ProtocolError
				if !errors.As(err, &perr) || !strings.Contains(err.Error(), tc.want) || relay != nil {
					t.Fatalf("handshake = relay %v, %v; want a *ProtocolError containing %q", relay, err, tc.want)
				}
			}
			<-done // the peer has closed its copies
			if after := openFds(); before >= 0 && after > before {
				t.Errorf("%d descriptors open before the handshake, %d after: received descriptors leaked", before, after)
			}
		})
	}
}
