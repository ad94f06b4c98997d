package server

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// MaxMessage bounds one message, fragments together. A frame's buffer is
// allocated from the length its header declares, before the bytes come,
// so this is what one connection can make a generation hold: 64 KiB, for
// an echo, times every connection a generation serves.
const MaxMessage = 64 << 10

// WriteTimeout bounds one write of a frame. A client that stops reading
// must not keep a retiring generation from handing its connection over
// (the handover waits for the write in progress) or from exiting.
const WriteTimeout = 10 * time.Second

// CloseTimeout is how long a connection waits for the client's close frame
// after sending its own, as RFC 6455 §7.1.1 asks, before closing the TCP
// connection anyway: long enough for a round trip, short beside a drain.
const CloseTimeout = 2 * time.Second

// errStop is what the boundary reader returns instead of reading: this
// generation is leaving and the connection is at a message boundary.
var errStop = errors.New("websocket: stopping at a message boundary")

// boundaryReader is the session's only way to read its socket. It reads
// straight from the connection, never ahead: every byte the client sent
// and the session has not consumed is still in the kernel's buffer (or in
// pending), so the socket itself can be handed over.
//
// Once stop is set it lets the session finish the message it has begun,
// and refuses to read the first byte of the next one.
type boundaryReader struct {
	c net.Conn
	// pending is read before c: bytes that came with the connection
	// (net/http's read-ahead, a predecessor's state).
	pending []byte
	// consumed counts the bytes of the current message read so far;
	// zero means a message boundary.
	consumed int
	stop     atomic.Bool
}

// Stop asks the reader to stop at the next message boundary. It may be
// called from any goroutine. A Read blocked in the kernel is interrupted
// with a deadline in the past; if it was in the middle of a message, Read
// lifts the deadline and goes on.
func (r *boundaryReader) Stop() {
	// The flag first, then the deadline: a Read that times out always
	// finds the flag set, and so never mistakes a stop for a client's
	// silence.
	r.stop.Store(true)
	r.c.SetReadDeadline(time.Unix(1, 0))
}

// Boundary tells the reader that the session has consumed a whole message
// (or control frame) and acted on it.
func (r *boundaryReader) Boundary() { r.consumed = 0 }

func (r *boundaryReader) Read(p []byte) (int, error) {
	if r.consumed == 0 && r.stop.Load() {
		return 0, errStop
	}
	if len(r.pending) > 0 {
		n := copy(p, r.pending)
		r.pending = r.pending[n:]
		r.consumed += n
		return n, nil
	}
	for {
		n, err := r.c.Read(p)
		r.consumed += n
		var ne net.Error
		if err == nil || !errors.As(err, &ne) || !ne.Timeout() || !r.stop.Load() {
			return n, err
		}
		// Our own deadline fired (no other deadline is ever set on
		// reads before the session stops).
		if r.consumed == 0 {
			return 0, errStop
		}
		// Mid-message: the client is sending the rest, and dropping
		// what we have would lose the message. Read on; the check at the
		// top stops us once it is answered. A client that never finishes
		// is cut at the drain deadline.
		r.c.SetReadDeadline(time.Time{})
		if n > 0 {
			return n, nil
		}
	}
}

// session is the server side of one WebSocket connection, in any
// generation. One goroutine runs it: reads, answers and the handover all
// happen in order, so when it stops reading no answer is half written.
type session struct {
	c        net.Conn
	r        *boundaryReader
	answered uint64
	pid      string
	// msg accumulates a fragmented message; fragmented is true while
	// one is open (then no boundary can be reached).
	msg        []byte
	op         ws.OpCode
	fragmented bool
}

func newSession(c net.Conn, st connState) *session {
	return &session{
		c:        c,
		r:        &boundaryReader{c: c, pending: st.Pending},
		answered: st.Answered,
		pid:      strconv.Itoa(os.Getpid()),
	}
}

// state is what a successor needs to resume. Only valid once serve
// returned errStop.
func (s *session) state() connState {
	return connState{Answered: s.answered, Pending: s.r.pending}
}

// closedError ends serve when the connection is over: the client closed
// it (Code is what we answered), or we failed it with Code.
type closedError struct {
	Code   ws.StatusCode
	Reason string
	// Sent is true once our close frame went out.
	Sent bool
}

func (e *closedError) Error() string {
	return fmt.Sprintf("websocket: closed with %d %q", e.Code, e.Reason)
}

// serve answers messages until the client closes the connection (a
// *closedError), the connection fails (its error), or the reader was
// stopped at a boundary (errStop): the connection is then ready to be
// handed over, with s.state().
func (s *session) serve() error {
	state := ws.StateServerSide
	for {
		h, err := ws.ReadHeader(s.r)
		if err != nil {
			return err
		}
		if s.fragmented {
			state = state.Set(ws.StateFragmented)
		} else {
			state = state.Clear(ws.StateFragmented)
		}
		if err := ws.CheckHeader(h, state); err != nil {
			return s.fail(ws.StatusProtocolError, err.Error())
		}
		if h.Length > MaxMessage-int64(len(s.msg)) {
			return s.fail(ws.StatusMessageTooBig, "message too big")
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(s.r, payload); err != nil {
			return err
		}
		ws.Cipher(payload, h.Mask, 0)

		switch h.OpCode {
		case ws.OpPing:
			if err := s.write(ws.OpPong, payload); err != nil {
				return err
			}
		case ws.OpPong:
		case ws.OpClose:
			return s.answerClose(payload)
		default:
			if h.OpCode != ws.OpContinuation {
				s.op = h.OpCode
			}
			s.msg = append(s.msg, payload...)
			s.fragmented = !h.Fin
			if s.fragmented {
				continue // no boundary inside a message
			}
			if s.op == ws.OpText && !utf8.Valid(s.msg) {
				return s.fail(ws.StatusInvalidFramePayloadData, "invalid UTF-8")
			}
			reply := append(s.msg, " pid="...)
			reply = append(reply, s.pid...)
			s.msg = s.msg[:0]
			if err := s.write(s.op, reply); err != nil {
				return err
			}
			s.answered++
		}
		if !s.fragmented {
			s.r.Boundary()
		}
	}
}

// write sends one unfragmented, unmasked frame in one write.
func (s *session) write(op ws.OpCode, payload []byte) error {
	var b bytes.Buffer
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(payload))}
	b.Grow(ws.HeaderSize(h) + len(payload))
	if err := ws.WriteHeader(&b, h); err != nil {
		return err
	}
	b.Write(payload)
	s.c.SetWriteDeadline(time.Now().Add(WriteTimeout))
	_, err := s.c.Write(b.Bytes())
	return err
}

// answerClose answers the client's close frame with the same code and,
// as the reason, how many messages were answered on this connection in
// all generations: the application state that travelled with it.
func (s *session) answerClose(payload []byte) error {
	code, _ := ws.ParseCloseFrameData(payload)
	if code.Empty() {
		code = ws.StatusNormalClosure
	}
	reason := "answered=" + strconv.FormatUint(s.answered, 10)
	err := s.write(ws.OpClose, ws.NewCloseFrameBody(code, reason))
	return &closedError{Code: code, Reason: reason, Sent: err == nil}
}

// fail sends a close frame with code and returns the *closedError that
// ends the session.
func (s *session) fail(code ws.StatusCode, reason string) error {
	err := s.write(ws.OpClose, ws.NewCloseFrameBody(code, reason))
	return &closedError{Code: code, Reason: reason, Sent: err == nil}
}

// goAway closes a connection that stays ours while this generation
// leaves (no successor, or it would not take the connection): a close
// frame, a short wait for the client's, then the TCP close. The session
// must be at a message boundary, so the frame is not cut into anything.
func (s *session) goAway(code ws.StatusCode, reason string) {
	defer s.c.Close()
	if s.write(ws.OpClose, ws.NewCloseFrameBody(code, reason)) != nil {
		return
	}
	// Read what the client sends until its close frame (or anything
	// else ends the wait); messages after our close are not answered.
	s.c.SetReadDeadline(time.Now().Add(CloseTimeout))
	src := io.MultiReader(bytes.NewReader(s.r.pending), s.c)
	for {
		h, err := ws.ReadHeader(src)
		if err != nil || h.Length > MaxMessage {
			return
		}
		if _, err := io.CopyN(io.Discard, src, h.Length); err != nil || h.OpCode == ws.OpClose {
			return
		}
	}
}
