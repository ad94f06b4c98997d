//go:build linux || darwin

package baton

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// linkPair connects an incumbent's end of the generation link to a
// successor's, in this process, over a real socketpair: the incumbent's
// reader runs, and the successor's watch if watch is true (acknowledged,
// as after a handover).
func linkPair(t *testing.T, watch bool) (*successorLink, *parent, *net.UnixConn) {
	t.Helper()
	a, b := socketPair(t)
	c := &child{conn: a}
	c.startLink()
	p := &parent{pid: os.Getpid(), conn: b, ack: make(chan struct{}), gone: make(chan struct{}), handed: newHandedSet(nil)}
	close(p.ack)
	if watch {
		go p.watch()
		t.Cleanup(func() {
			b.Close()
			<-p.gone
		})
	}
	t.Cleanup(func() {
		a.Close()
		<-c.link.done
	})
	return c.link, p, b
}

// tcpConns is tcpPair as *net.TCPConn, which HandOver takes.
func tcpConns(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	c, s := tcpPair(t)
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

func acceptWithin(t *testing.T, l net.Listener, d time.Duration) *HandedConn {
	t.Helper()
	got := make(chan net.Conn, 1)
	go func() {
		c, _ := l.Accept()
		got <- c
	}()
	select {
	case c := <-got:
		hc, ok := c.(*HandedConn)
		if !ok {
			t.Fatalf("Accept returned %T, want *HandedConn", c)
		}
		return hc
	case <-time.After(d):
		t.Fatalf("nothing accepted within %v", d)
		return nil
	}
}

// An acknowledged connection is the successor's: it arrives with its
// state, data sent before and after the handover reach it, and the
// incumbent's descriptor is closed.
func TestLinkHandOverInProcess(t *testing.T) {
	t.Parallel()
	link, p, _ := linkPair(t, true)
	l, err := p.handed.listen("echo")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	client, server := tcpConns(t)
	client.Write([]byte("before "))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := link.handOver(ctx, "echo", server, []byte("state-1")); err != nil {
		t.Fatalf("handOver: %v", err)
	}
	hc := acceptWithin(t, l, 10*time.Second)
	defer hc.Close()
	if string(hc.State) != "state-1" {
		t.Errorf("handed state %q, want state-1", hc.State)
	}
	client.Write([]byte("after\n"))
	hc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 64)
	n, err := io.ReadAtLeast(hc, b, len("before after\n"))
	if got := string(b[:n]); got != "before after\n" || err != nil {
		t.Errorf("the successor read %q, %v; want %q", got, err, "before after\n")
	}
	hc.Write([]byte("from the successor"))
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err = client.Read(b)
	if got := string(b[:n]); got != "from the successor" {
		t.Errorf("the client read %q, %v", got, err)
	}
}

// What the successor refuses stays the incumbent's, with the reason.
func TestLinkRefusals(t *testing.T) {
	t.Parallel()
	link, p, _ := linkPair(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, server := tcpConns(t)
	err := link.handOver(ctx, "nobody", server, nil)
	if !errors.Is(err, ErrHandOverRefused) || !strings.Contains(err.Error(), `nobody asked for connections named "nobody"`) {
		t.Errorf("handOver under a name nobody asked for: %v; want ErrHandOverRefused saying so", err)
	}

	closed, err := p.handed.listen("closed")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if err := link.handOver(ctx, "closed", server, nil); !errors.Is(err, ErrHandOverRefused) || !strings.Contains(err.Error(), "is closed") {
		t.Errorf("handOver to a closed listener: %v; want ErrHandOverRefused", err)
	}

	// The queue of one listener is bounded: beyond it, refused.
	full, err := p.handed.listen("full")
	if err != nil {
		t.Fatal(err)
	}
	var clients []*net.TCPConn
	for i := range handedQueue {
		c, s := tcpConns(t)
		if err := link.handOver(ctx, "full", s, nil); err != nil {
			t.Fatalf("handOver %d of %d: %v", i+1, handedQueue, err)
		}
		s.Close() // as HandOver does: the successor holds it now
		clients = append(clients, c)
	}
	if err := link.handOver(ctx, "full", server, nil); !errors.Is(err, ErrHandOverRefused) || !strings.Contains(err.Error(), "wait to be accepted") {
		t.Errorf("handOver beyond the queue: %v; want ErrHandOverRefused", err)
	}
	// Still ours and usable: the refusals left it alone.
	if _, err := server.Write([]byte("x")); err != nil {
		t.Errorf("writing to a refused connection: %v", err)
	}
	// Closing the listener closes what it queued, which is this
	// process's: each client sees the end of its connection.
	full.Close()
	for i, c := range clients {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
			t.Errorf("client %d after the listener closed its queue: %d bytes, %v; want EOF", i, n, err)
		}
	}
	if _, err := full.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept on a closed Handed listener: %v; want net.ErrClosed", err)
	}
}

// At most maxInFlight connections wait for an answer; ctx bounds the wait
// for a slot, and a connection that never got one is the caller's. When
// the link ends, every connection in flight is the incumbent's.
func TestLinkInFlightBounded(t *testing.T) {
	t.Parallel()
	link, _, b := linkPair(t, false) // a successor that never answers
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	errs := make(chan error, maxInFlight)
	for range maxInFlight {
		_, s := tcpConns(t)
		go func() { errs <- link.handOver(ctx, "x", s, nil) }()
	}
	// Every slot is taken once maxInFlight frames reached the socket;
	// the next waits for a slot until its ctx ends.
	for range maxInFlight {
		if _, _, fds, err := recvFrame(b); err != nil {
			t.Fatal(err)
		} else {
			closeFds(fds)
		}
	}
	short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancelShort()
	_, s := tcpConns(t)
	if err := link.handOver(short, "x", s, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("handOver with every slot taken: %v; want the deadline", err)
	}
	b.Close() // the successor is gone: nobody acknowledged anything
	for range maxInFlight {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrNoSuccessor) {
				t.Errorf("handOver in flight when the link ended: %v; want ErrNoSuccessor", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("handOver still waits after the link ended")
		}
	}
	if err := link.handOver(ctx, "x", s, nil); !errors.Is(err, ErrNoSuccessor) {
		t.Errorf("handOver after the link ended: %v; want ErrNoSuccessor", err)
	}
}

// Only a connection's socket may be handed over: not a listener, not a
// file.
func TestLinkRefusesNonConnections(t *testing.T) {
	t.Parallel()
	link, _, _ := linkPair(t, true)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if err := link.handOver(context.Background(), "x", l.(*net.TCPListener), nil); err == nil || !strings.Contains(err.Error(), "listening socket") {
		t.Errorf("handOver of a listener: %v; want it refused", err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := link.handOver(context.Background(), "x", f, nil); err == nil {
		t.Errorf("handOver of a file: no error")
	}
}

// A successor that answers for a connection not in flight breaks the
// protocol: the link ends, and what is in flight stays the incumbent's.
func TestLinkBadAnswer(t *testing.T) {
	t.Parallel()
	link, _, b := linkPair(t, false)
	body, _ := encodeConnAck(99)
	f, _ := encodeFrame(frameConnAck, body)
	if err := sendFrame(b, f, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case <-link.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the link did not end on an answer for nothing")
	}
	if !strings.Contains(link.err.Error(), "connection 99, which is not in flight") {
		t.Errorf("the link ended with %v", link.err)
	}
}

// The Upgrader's part: state blobs and their limits, Handed before Ready
// only, HandOver without a successor.
func TestLinkUpgraderRules(t *testing.T) {
	u := newTestUpgrader(t)
	if err := u.SetState("counter", []byte("1")); err != nil {
		t.Errorf("SetState: %v", err)
	}
	if err := u.SetState("baton.tickets", []byte("k")); err == nil || !strings.Contains(err.Error(), "reserved") {
		t.Errorf("SetState of a reserved name: %v; want it refused", err)
	}
	if err := u.setState("baton.tickets", []byte("k")); err != nil {
		t.Errorf("setState of the library's own blob: %v", err)
	}
	for _, bad := range []string{"", "a:b", strings.Repeat("n", 256)} {
		if err := u.SetState(bad, nil); err == nil {
			t.Errorf("SetState(%q) accepted", bad)
		}
	}
	if err := u.SetState("big", make([]byte, MaxState)); err == nil || !strings.Contains(err.Error(), "exceed the limit") {
		t.Errorf("SetState beyond MaxState: %v; want it refused", err)
	}
	if err := u.SetState("big", make([]byte, MaxState-2)); err != nil {
		t.Errorf("SetState to exactly MaxState: %v", err)
	}
	if err := u.SetState("big", nil); err != nil || len(u.stateSnapshot()) != 2 {
		t.Errorf("SetState(nil) = %v, blobs %d; want it removed", err, len(u.stateSnapshot()))
	}
	if b, ok := u.PredecessorState("counter"); ok || b != nil {
		t.Errorf("a first generation's PredecessorState = %q, %t", b, ok)
	}

	l, err := u.Handed("echo")
	if err != nil {
		t.Fatalf("Handed before Ready: %v", err)
	}
	if _, err := u.Handed("echo"); err == nil {
		t.Errorf("Handed twice under one name: no error")
	}
	_, server := tcpConns(t)
	if err := u.HandOver(context.Background(), "echo", server, nil); !errors.Is(err, ErrNoSuccessor) {
		t.Errorf("HandOver without a successor: %v; want ErrNoSuccessor", err)
	}
	if err := u.HandOver(context.Background(), "echo", server, make([]byte, MaxConnState+1)); err == nil || errors.Is(err, ErrNoSuccessor) {
		t.Errorf("HandOver of too much state: %v; want it refused for its size", err)
	}
	if err := u.Ready(); err != nil {
		t.Fatal(err)
	}
	if _, err := u.Handed("late"); err == nil {
		t.Errorf("Handed after Ready: no error")
	}
	// A first generation's listener yields nothing until closed.
	accepted := make(chan error, 1)
	go func() { _, err := l.Accept(); accepted <- err }()
	select {
	case err := <-accepted:
		t.Fatalf("Accept on a first generation's Handed listener returned %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	l.Close()
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v; want net.ErrClosed", err)
	}
}

// A successor too slow to read: ctx bounds each send, and however a send
// ends — not begun, cut in the middle (the link then takes nothing
// more), or whole and unanswered until the link ends — the connection is
// the caller's.
func TestLinkSendBounded(t *testing.T) {
	t.Parallel()
	link, _, b := linkPair(t, false) // reads nothing until closed
	state := make([]byte, MaxConnState)
	errs := make(chan error, maxInFlight)
	for range maxInFlight {
		_, s := tcpConns(t)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			defer cancel()
			errs <- link.handOver(ctx, "x", s, state)
		}()
	}
	// 64 × 64 KiB cannot all fit in the socket's buffer: some sends
	// time out. Those whole on the wire wait for an answer.
	timedOut := 0
	for timedOut == 0 {
		select {
		case err := <-errs:
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrNoSuccessor) {
				timedOut++
				continue
			}
			t.Fatalf("handOver to a successor that reads nothing: %v; want a timeout or ErrNoSuccessor", err)
		case <-time.After(20 * time.Second):
			t.Fatal("no handOver returned though the successor reads nothing")
		}
	}
	b.Close()
	for range maxInFlight - timedOut {
		select {
		case err := <-errs:
			if err == nil {
				t.Errorf("handOver succeeded with a successor that acknowledged nothing")
			}
		case <-time.After(20 * time.Second):
			t.Fatal("handOver still waits after the link ended")
		}
	}
}
