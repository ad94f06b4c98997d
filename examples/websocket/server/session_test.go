package server

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// tcpPair returns both ends of a loopback TCP connection: the session
// must be tested on a real socket, whose read deadlines and kernel buffer
// are what the handover relies on.
func tcpPair(t *testing.T) (server net.Conn, client *testClient) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close(); sc.Close() })
	return sc, &testClient{c: cc, r: cc}
}

// serveAsync runs s.serve in a goroutine and returns its result.
func serveAsync(s *session) <-chan error {
	ch := make(chan error, 1)
	go func() { ch <- s.serve() }()
	return ch
}

func wait(t *testing.T, ch <-chan error, what string) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: serve still running after 10s", what)
		return nil
	}
}

func wantEcho(t *testing.T, tc *testClient, msg string) {
	t.Helper()
	op, p, err := tc.read(5 * time.Second)
	want := fmt.Sprintf("%s pid=%d", msg, os.Getpid())
	if err != nil || op != ws.OpText || string(p) != want {
		t.Fatalf("reading the answer to %q: got %v %q, %v; want text %q", msg, op, p, err, want)
	}
}

// Stopped while idle, a session returns errStop having read nothing, and
// a second session on the same socket — the successor — answers what the
// client sent meanwhile, with the message count carried over.
func TestStopIdleThenResume(t *testing.T) {
	t.Parallel()
	sc, tc := tcpPair(t)
	s := newSession(sc, connState{Answered: 41})
	done := serveAsync(s)
	if err := tc.send("one", false); err != nil {
		t.Fatal(err)
	}
	wantEcho(t, tc, "one")
	s.r.Stop()
	if err := wait(t, done, "Stop while idle"); !errors.Is(err, errStop) {
		t.Fatalf("serve() = %v after Stop; want errStop", err)
	}
	st := s.state()
	if st.Answered != 42 || len(st.Pending) != 0 {
		t.Fatalf("state() = %+v; want Answered 42, no pending bytes", st)
	}
	if err := tc.send("two", false); err != nil {
		t.Fatal(err)
	}
	sc.SetReadDeadline(time.Time{}) // as a fresh descriptor in the successor would be
	s2 := newSession(sc, st)
	done = serveAsync(s2)
	wantEcho(t, tc, "two")
	code, reason, err := tc.close(5 * time.Second)
	if err != nil || code != ws.StatusNormalClosure || reason != "answered=43" {
		t.Fatalf("close() = %v %q, %v; want 1000 \"answered=43\"", code, reason, err)
	}
	var ce *closedError
	if err := wait(t, done, "close"); !errors.As(err, &ce) {
		t.Fatalf("serve() = %v after the client's close; want a *closedError", err)
	}
}

// Stopped with half a frame read, a session reads the rest, answers the
// message, and only then stops: nothing of a message is ever dropped.
func TestStopMidFrameFinishesMessage(t *testing.T) {
	t.Parallel()
	sc, tc := tcpPair(t)
	s := newSession(sc, connState{})
	done := serveAsync(s)
	frame := clientFrame(ws.OpText, true, []byte("split"))
	if _, err := tc.c.Write(frame[:3]); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the session has read the 3 bytes and waits for more
	s.r.Stop()
	time.Sleep(50 * time.Millisecond) // its deadline fired mid-frame
	if _, err := tc.c.Write(frame[3:]); err != nil {
		t.Fatal(err)
	}
	wantEcho(t, tc, "split")
	if err := wait(t, done, "Stop mid-frame"); !errors.Is(err, errStop) {
		t.Fatalf("serve() = %v; want errStop after the message", err)
	}
	if s.answered != 1 {
		t.Errorf("answered = %d; want 1", s.answered)
	}
}

// A fragmented message is one message: no stop between its frames, and
// control frames in between are answered.
func TestStopWaitsForLastFragment(t *testing.T) {
	t.Parallel()
	sc, tc := tcpPair(t)
	s := newSession(sc, connState{})
	done := serveAsync(s)
	tc.c.Write(clientFrame(ws.OpText, false, []byte("frag")))
	tc.c.Write(clientFrame(ws.OpPing, true, []byte("p")))
	if op, p, err := tc.read(5 * time.Second); err != nil || op != ws.OpPong || string(p) != "p" {
		t.Fatalf("answer to a ping: %v %q, %v; want pong \"p\"", op, p, err)
	}
	s.r.Stop()
	time.Sleep(50 * time.Millisecond)
	tc.c.Write(clientFrame(ws.OpContinuation, true, []byte("ment")))
	wantEcho(t, tc, "fragment")
	if err := wait(t, done, "Stop inside a fragmented message"); !errors.Is(err, errStop) {
		t.Fatalf("serve() = %v; want errStop", err)
	}
}

// Bytes read before the session began (net/http's read-ahead) are served
// first; bytes not reached when it stops travel in the state, untouched.
func TestPendingBytes(t *testing.T) {
	t.Parallel()
	sc, tc := tcpPair(t)
	first := clientFrame(ws.OpText, true, []byte("early"))
	second := clientFrame(ws.OpText, true, []byte("later"))
	s := newSession(sc, connState{Pending: first})
	done := serveAsync(s)
	wantEcho(t, tc, "early")
	s.r.Stop()
	if err := wait(t, done, "Stop"); !errors.Is(err, errStop) {
		t.Fatalf("serve() = %v; want errStop", err)
	}

	// Stopped before a byte of its pending data was read.
	s = newSession(sc, connState{Pending: second[:4]})
	s.r.Stop()
	if err := s.serve(); !errors.Is(err, errStop) {
		t.Fatalf("serve() = %v; want errStop", err)
	}
	blob, err := s.state().encode()
	if err != nil {
		t.Fatal(err)
	}
	st, err := decodeState(blob)
	if err != nil || !bytes.Equal(st.Pending, second[:4]) {
		t.Fatalf("pending bytes through a state: %q, %v; want %q", st.Pending, err, second[:4])
	}
	sc.SetReadDeadline(time.Time{})
	tc.c.Write(second[4:])
	done = serveAsync(newSession(sc, st))
	wantEcho(t, tc, "later")
	tc.close(5 * time.Second)
	wait(t, done, "close")
}

// Protocol errors end the session with the right close code.
func TestProtocolErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		frame []byte
		code  ws.StatusCode
	}{
		{"unmasked", ws.MustCompileFrame(ws.NewTextFrame([]byte("x"))), ws.StatusProtocolError},
		{"continuation first", clientFrame(ws.OpContinuation, true, []byte("x")), ws.StatusProtocolError},
		{"bad UTF-8", clientFrame(ws.OpText, true, []byte{0xff}), ws.StatusInvalidFramePayloadData},
		{"too big", func() []byte {
			h := ws.Header{Fin: true, OpCode: ws.OpBinary, Length: MaxMessage + 1, Masked: true}
			var b bytes.Buffer
			ws.WriteHeader(&b, h)
			return b.Bytes()
		}(), ws.StatusMessageTooBig},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			sc, cl := tcpPair(t)
			done := serveAsync(newSession(sc, connState{}))
			cl.c.Write(tc.frame)
			op, p, err := cl.read(5 * time.Second)
			code, _ := ws.ParseCloseFrameData(p)
			if err != nil || op != ws.OpClose || code != tc.code {
				t.Fatalf("answer: %v %q, %v; want a close frame with %d", op, p, err, tc.code)
			}
			var ce *closedError
			if err := wait(t, done, tc.name); !errors.As(err, &ce) || ce.Code != tc.code {
				t.Fatalf("serve() = %v; want a *closedError with %d", err, tc.code)
			}
		})
	}
}

// goAway sends a close frame and waits for the client's.
func TestGoAway(t *testing.T) {
	t.Parallel()
	sc, tc := tcpPair(t)
	s := newSession(sc, connState{})
	gone := make(chan struct{})
	go func() { s.goAway(ws.StatusGoingAway, "server stopping"); close(gone) }()
	op, p, err := tc.read(5 * time.Second)
	code, reason := ws.ParseCloseFrameData(p)
	if err != nil || op != ws.OpClose || code != ws.StatusGoingAway || reason != "server stopping" {
		t.Fatalf("goAway sent %v %q, %v; want close 1001 \"server stopping\"", op, p, err)
	}
	tc.c.Write(clientFrame(ws.OpText, true, []byte("late")))
	tc.c.Write(clientFrame(ws.OpClose, true, ws.NewCloseFrameBody(ws.StatusGoingAway, "")))
	select {
	case <-gone:
	case <-time.After(CloseTimeout / 2):
		t.Fatal("goAway still waiting after the client's close frame")
	}
}
