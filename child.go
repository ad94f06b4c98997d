//go:build linux || darwin

package baton

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// child is what an incumbent knows of the successor it started.
type child struct {
	path string
	proc *os.Process
	conn *net.UnixConn

	// exited is closed once the successor has exited. For our own child,
	// a goroutine reaps it whatever happens, so it never lingers as a
	// zombie, not even one that exits long after taking over, and state
	// is set before. A successor that is not our child (started detached,
	// or a new instance that came through the control socket) is watched
	// through a pidfd; its parent reaps it and state stays nil.
	exited <-chan struct{}
	state  *os.ProcessState

	// result receives the outcome of the handshake: the ready message, or
	// why there will not be one.
	result chan handshakeResult

	// link is the generation link once the successor has taken over
	// (startLink): the one reader of conn from then on.
	link *successorLink

	// relay is the relay socket the successor passed with ready, until
	// the relay adopts it once ready is acknowledged.
	relay *net.UnixConn
}

type handshakeResult struct {
	ready readyMsg
	relay *net.UnixConn // the relay socket the successor passed with ready
	err   error
}

// handoffFd is where the successor finds its end of the socketpair: right
// after stdin, stdout and stderr.
const handoffFd = 3

// spawn says how to start a successor.
type spawn struct {
	// detached starts it as our sibling, a child of our parent (see
	// detachedAttr), so it outlives us where our parent expects it to.
	detached bool
	// env is added to its environment.
	env []string
}

// startChild starts the successor and begins the handshake. The returned
// child is running; its outcome arrives on child.result.
func startChild(path string, how spawn, generation int, fds *fdSnapshot, deadline time.Time) (*child, error) {
	conn, remote, err := socketpair()
	if err != nil {
		return nil, err
	}
	files := []*os.File{os.Stdin, os.Stdout, os.Stderr, remote}
	for i := 0; i < 3; i++ {
		if !validFd(i) {
			files[i] = nil // closed here, closed there
		}
	}
	attr := &os.ProcAttr{
		Dir:   initialWD,
		Env:   append(successorEnv(handoffFd), how.env...),
		Files: files,
	}
	pidfd := -1
	if how.detached {
		attr.Sys = detachedAttr(&pidfd)
	}
	proc, err := os.StartProcess(path, append([]string{os.Args[0]}, os.Args[1:]...), attr)
	remote.Close()
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &child{
		path:   path,
		proc:   proc,
		conn:   conn,
		result: make(chan handshakeResult, 1),
	}
	if how.detached {
		if c.exited, err = watchProcess(proc.Pid, pidfd); err != nil {
			proc.Kill()
			conn.Close()
			return nil, err
		}
	} else {
		exited := make(chan struct{})
		c.exited = exited
		go func() {
			c.state, _ = proc.Wait()
			close(exited)
		}()
	}
	c.start(generation, fds, deadline)
	return c, nil
}

// peerChild is the successor that came through the control socket: a new
// instance of the program, started by somebody else (a supervisor), which
// asked for the sockets over conn.
func peerChild(conn *net.UnixConn, pid int, generation int, fds *fdSnapshot, deadline time.Time) (*child, error) {
	// On Linux FindProcess holds a pidfd: signals cannot hit a recycled pid.
	proc, err := os.FindProcess(pid)
	if err != nil {
		return nil, err
	}
	exited, err := watchProcess(pid, -1)
	if err != nil {
		proc.Release()
		return nil, err
	}
	c := &child{
		path:   "new instance",
		proc:   proc,
		conn:   conn,
		exited: exited,
		result: make(chan handshakeResult, 1),
	}
	c.start(generation, fds, deadline)
	return c, nil
}

func (c *child) start(generation int, fds *fdSnapshot, deadline time.Time) {
	c.conn.SetDeadline(deadline)
	go func() {
		m, relay, err := c.handshake(generation, fds)
		c.result <- handshakeResult{m, relay, err}
	}()
}

// handshake sends hello and the descriptors, then reads the successor's
// answer.
func (c *child) handshake(generation int, fds *fdSnapshot) (readyMsg, *net.UnixConn, error) {
	body, err := encodeHello(helloMsg{
		Version:    protocolVersion,
		Generation: generation,
		PID:        os.Getpid(),
		Fds:        fds.len(),
	})
	if err != nil {
		return readyMsg{}, nil, err
	}
	hello, err := encodeFrame(frameHello, body)
	if err != nil {
		return readyMsg{}, nil, err
	}
	if err := sendFrame(c.conn, hello, nil); err != nil {
		return readyMsg{}, nil, c.sendFailed("sending hello", err)
	}
	for i := 0; i < fds.len(); {
		n := min(fds.len()-i, maxFdsPerFrame)
		var sendErr error
		// The registry holds no copy of a socket the application
		// holds: each batch is sent from inside the Control callbacks
		// that keep its descriptors open (see withFds).
		err := fds.send(i, i+n, func(metas []fdMeta, batch []int) error {
			body, err := encodeFds(metas)
			if err != nil {
				return err
			}
			frame, err := encodeFrame(frameFds, body)
			if err != nil {
				return err
			}
			sendErr = sendFrame(c.conn, frame, batch)
			return sendErr
		})
		if sendErr != nil {
			return readyMsg{}, nil, c.sendFailed("sending descriptors", sendErr)
		}
		if err != nil {
			return readyMsg{}, nil, err
		}
		i += n
	}
	body, err = encodeState(fds.state)
	if err != nil {
		return readyMsg{}, nil, err
	}
	state, err := encodeFrame(frameState, body)
	if err != nil {
		return readyMsg{}, nil, err
	}
	if err := sendFrame(c.conn, state, nil); err != nil {
		return readyMsg{}, nil, c.sendFailed("sending the state", err)
	}
	typ, body, extra, err := recvFrame(c.conn)
	if err != nil {
		// ECONNRESET: the successor exited without reading all we sent
		// (a script, a crash before New). Either way it is gone.
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return readyMsg{}, nil, errors.New("handoff socket closed before ready")
		}
		return readyMsg{}, nil, err
	}
	switch {
	case typ == frameAbort && len(extra) == 0:
		return readyMsg{}, nil, &refusedError{parseAbort(body).Reason}
	case typ != frameReady:
		closeFds(extra)
		return readyMsg{}, nil, protoErrorf("unexpected %q frame with %d descriptors from successor", typ, len(extra))
	}
	m, err := parseReady(body)
	if err == nil && len(extra) != 1 {
		err = protoErrorf("ready frame with %d descriptors, want 1 (the relay socket)", len(extra))
	}
	if err != nil {
		closeFds(extra)
		return readyMsg{}, nil, err
	}
	relay, err := relayConn(extra[0])
	if err != nil {
		return readyMsg{}, nil, err
	}
	return m, relay, nil
}

// sendFailed explains a failed send. A successor that refuses the handoff
// part way — say it cannot receive every descriptor — sends an abort and
// exits while we still send; the send then fails with EPIPE or ECONNRESET,
// but the abort, which says why, is waiting in our receive queue: return
// it. The peer is gone, so the read cannot block (the deadline is a guard).
func (c *child) sendFailed(what string, err error) error {
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
		return fmt.Errorf("%s: %w", what, err)
	}
	c.conn.SetReadDeadline(time.Now().Add(time.Second))
	typ, body, fds, rerr := recvFrame(c.conn)
	closeFds(fds)
	if rerr == nil && typ == frameAbort {
		return &refusedError{parseAbort(body).Reason}
	}
	return fmt.Errorf("%s: %w", what, err)
}

// refusedError is the successor's own account of why it refused the
// handoff (an abort frame): the best explanation an incumbent can give.
type refusedError struct{ reason string }

func (e *refusedError) Error() string { return "refused the handoff: " + e.reason }

// lastWords returns the outcome of the handshake of a successor that has
// exited, if it ends within d. It does as soon as the socket is drained:
// the successor's end closed when it exited (unless something it started
// inherited it, hence d).
func (c *child) lastWords(d time.Duration) (handshakeResult, bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case r := <-c.result:
		return r, true
	case <-t.C:
		return handshakeResult{}, false
	}
}

// ack tells the successor that it may serve. With no probation this
// generation has committed to the handover and drains: the successor owns
// the service. With one, both serve until passed (or the successor's
// end).
func (c *child) ack(probation time.Duration) error {
	body, err := encodeAck(probation)
	if err != nil {
		return err
	}
	frame, err := encodeFrame(frameAck, body)
	if err != nil {
		return err
	}
	return sendFrame(c.conn, frame, nil)
}

// kill stops a successor that failed, and reaps it. SIGKILL: a successor
// that was not ready has served nothing, and one that hangs may ignore
// anything gentler.
func (c *child) kill() {
	c.proc.Kill()
	c.conn.Close()
	if c.relay != nil {
		c.relay.Close()
	}
	<-c.exited
}

// exitError describes how the successor ended, for a ChildError.
func (c *child) exitError() error {
	if c.state == nil {
		return errExitedNotOurs
	}
	return &exec.ExitError{ProcessState: c.state}
}

// errExitedNotOurs describes the end of a successor that is not our child:
// its exit status went to its parent.
var errExitedNotOurs = errors.New("exited (its exit status went to its parent, not to us)")

// waitExited waits a little for the successor to be reaped, for errors that
// usually mean it is dying (EOF on the socket), so the report can say how
// it ended.
func (c *child) waitExited(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.exited:
		return true
	case <-t.C:
		return false
	}
}

// errNotServing: the successor exited, broke the link or said something
// else before its serving frame.
var errNotServing = errors.New("successor did not say it serves")

// waitServing waits, until deadline, for the successor's serving frame:
// its PID file and control socket name it now. The link's reader hears
// it (startLink); Exec is the one caller.
func (c *child) waitServing(deadline time.Time) error {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-c.link.serving:
		return nil
	case <-c.link.done:
		return fmt.Errorf("%w: %w", errNotServing, c.link.err)
	case <-t.C:
		return fmt.Errorf("%w: %w", errNotServing, os.ErrDeadlineExceeded)
	}
}

// maxInFlight bounds the connections handed over and not yet answered:
// HandOver waits for a slot. 64 keeps the successor's answers (a few
// bytes each, reasons short) far below a socket buffer, so that the
// successor never blocks writing one, and is plenty for a drain that
// hands connections over as they fall idle.
const maxInFlight = 64

// successorLink is the incumbent's end of the generation link: after the
// ack, one goroutine (read) reads everything the successor says and
// hands each answer to the HandOver waiting for it.
type successorLink struct {
	conn  *net.UnixConn
	slots chan struct{} // one token per connection in flight

	sendMu sync.Mutex // one frame at a time on the wire
	broken bool       // under sendMu: a frame went out in part; send no more

	mu      sync.Mutex
	nextID  uint32
	waiting map[uint32]chan linkVerdict

	serving chan struct{} // closed by read on the serving frame
	done    chan struct{} // closed by read when the link ends
	err     error         // why it ended; set before done is closed
}

// linkVerdict is the successor's answer for one connection.
type linkVerdict struct {
	acked  bool
	reason string // why it refused
}

// startLink starts reading the successor's end of the link. Called once,
// when the successor has taken over.
func (c *child) startLink() {
	c.conn.SetDeadline(time.Time{}) // the handshake's deadline is over
	c.link = &successorLink{
		conn:    c.conn,
		slots:   make(chan struct{}, maxInFlight),
		waiting: make(map[uint32]chan linkVerdict),
		serving: make(chan struct{}),
		done:    make(chan struct{}),
	}
	go c.link.read()
}

// read dispatches the successor's frames until the link ends: EOF when
// the successor exits, or a frame that breaks the protocol, after which
// nothing it says can be trusted and it is treated as gone.
func (l *successorLink) read() {
	var err error
	for err == nil {
		var typ byte
		var body []byte
		var fds []int
		typ, body, fds, err = recvFrame(l.conn)
		if err != nil {
			break
		}
		if len(fds) > 0 {
			closeFds(fds)
			err = protoErrorf("successor sent descriptors with a %q frame", typ)
			break
		}
		switch typ {
		case frameServing:
			if err = parseServing(body); err == nil {
				select {
				case <-l.serving:
					err = protoErrorf("a second serving frame")
				default:
					close(l.serving)
				}
			}
		case frameConnAck:
			var id uint32
			if id, err = parseConnAck(body); err == nil {
				err = l.answer(id, linkVerdict{acked: true})
			}
		case frameConnRefuse:
			var m connRefuseMsg
			if m, err = parseConnRefuse(body); err == nil {
				err = l.answer(m.ID, linkVerdict{reason: m.Reason})
			}
		default:
			err = protoErrorf("unexpected %q frame from the successor", typ)
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		err = errors.New("the successor closed the link (it exited)")
	}
	l.mu.Lock()
	l.err = err
	close(l.done)
	l.mu.Unlock()
	// Whatever is still in flight was not acknowledged: ours. A
	// successor that acked before it went sent the ack first, and the
	// stream keeps the order, so it was read above.
	l.conn.Close()
}

// answer delivers the verdict for connection id to its HandOver.
func (l *successorLink) answer(id uint32, v linkVerdict) error {
	l.mu.Lock()
	w, ok := l.waiting[id]
	delete(l.waiting, id)
	l.mu.Unlock()
	if !ok {
		return protoErrorf("an answer for connection %d, which is not in flight", id)
	}
	w <- v // buffered: read never blocks on a waiter
	return nil
}

// handOver passes c to the successor, and waits for its answer. See
// Upgrader.HandOver for the rules of ownership.
func (l *successorLink) handOver(ctx context.Context, name string, c syscall.Conn, state []byte) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	if err := checkConnSocket(rc); err != nil {
		return fmt.Errorf("baton: HandOver: %w", err)
	}
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return fmt.Errorf("%w: %w", ErrNoSuccessor, l.err)
	case <-ctx.Done():
		return fmt.Errorf("baton: HandOver: waiting for a slot (%d connections in flight): %w", maxInFlight, ctx.Err())
	}
	defer func() { <-l.slots }()

	verdict := make(chan linkVerdict, 1)
	l.mu.Lock()
	select {
	case <-l.done:
		l.mu.Unlock()
		return fmt.Errorf("%w: %w", ErrNoSuccessor, l.err)
	default:
	}
	// Ids wrap after 4 billion; at most maxInFlight are taken, so a free
	// one is near.
	id := l.nextID
	for {
		id++
		if _, taken := l.waiting[id]; id != 0 && !taken {
			break
		}
	}
	l.nextID = id
	l.waiting[id] = verdict
	l.mu.Unlock()
	forget := func() {
		l.mu.Lock()
		delete(l.waiting, id)
		l.mu.Unlock()
	}

	body, err := encodeConn(connMsg{ID: id, Name: name, State: state})
	if err != nil {
		forget()
		return err
	}
	frame, err := encodeFrame(frameConn, body)
	if err != nil {
		forget()
		return err
	}
	sent, err := l.send(ctx, frame, rc)
	if !sent {
		// Not a byte of the frame, so not the descriptor, left: ours.
		forget()
		// A closed link: the successor is gone, or broke the protocol
		// and read closed our end.
		if errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, errLinkBroken) || errors.Is(err, net.ErrClosed) {
			return fmt.Errorf("%w: the link is closed: %w", ErrNoSuccessor, err)
		}
		if ctx.Err() != nil {
			// ctx ended the send: say so in a way callers can test.
			return fmt.Errorf("baton: HandOver: sending the connection: %w (%v)", ctx.Err(), err)
		}
		return fmt.Errorf("baton: HandOver: sending the connection: %w", err)
	}
	if err != nil {
		// Part of the frame went out: the successor can never read it
		// whole, so it never acknowledges it; it closes what it got when
		// the link ends. Ours, but the link takes nothing more.
		forget()
		return fmt.Errorf("%w: the link broke sending the connection: %w", ErrNoSuccessor, err)
	}

	// The connection is on the wire. From here only the successor's
	// answer, or the end of the link, says whose it is: ctx cannot end
	// this wait, for returning early would leave two processes each
	// thinking the connection theirs (or neither). The successor answers
	// at once, and the link ends when it exits, so the wait is as long
	// as the successor lives and no longer.
	select {
	case v := <-verdict:
		if !v.acked {
			return fmt.Errorf("%w: %s", ErrHandOverRefused, v.reason)
		}
	case <-l.done:
		// read may have delivered the answer just before it ended.
		select {
		case v := <-verdict:
			if !v.acked {
				return fmt.Errorf("%w: %s", ErrHandOverRefused, v.reason)
			}
		default:
			return fmt.Errorf("%w: %w", ErrNoSuccessor, l.err)
		}
	}
	return nil
}

// passed tells the successor that its probation passed: it owns the
// service now. A second is plenty for five bytes into an empty socket
// buffer (nothing else is sent before it); a successor too stopped to
// take them has not passed.
func (l *successorLink) passed() error {
	frame, err := encodeFrame(framePassed, nil)
	if err != nil {
		return err
	}
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	if l.broken {
		return errLinkBroken
	}
	l.conn.SetWriteDeadline(time.Now().Add(time.Second))
	defer l.conn.SetWriteDeadline(time.Time{})
	if err := sendFrame(l.conn, frame, nil); err != nil {
		// Whether any of it went out is unknown: send nothing more.
		l.broken = true
		l.conn.CloseWrite()
		return err
	}
	return nil
}

// errLinkBroken: an earlier send went out in part, and the link takes
// nothing more.
var errLinkBroken = errors.New("the link is broken (a frame went out in part)")

// send writes frame with c's descriptor attached, within ctx. sent
// reports whether any of it went out: if so and err is not nil, the link
// is broken (half a frame on the wire) and is shut for writing, so the
// successor sees the frame cut short and then EOF.
func (l *successorLink) send(ctx context.Context, frame []byte, rc syscall.RawConn) (sent bool, err error) {
	l.sendMu.Lock()
	defer l.sendMu.Unlock()
	if l.broken {
		return false, errLinkBroken
	}
	// ctx bounds the send: the successor may be too slow to read.
	deadline, _ := ctx.Deadline()
	l.conn.SetWriteDeadline(deadline)
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		l.conn.SetWriteDeadline(time.Now())
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired // it runs or ran: let it finish before the reset
		}
		l.conn.SetWriteDeadline(time.Time{})
	}()
	n := 0
	// The descriptor is sent from inside Control, which keeps it open
	// (and its number ours) while the kernel takes its reference: never
	// through Fd, which would make the socket blocking for its next
	// owner too.
	cerr := rc.Control(func(fd uintptr) {
		n, _, err = l.conn.WriteMsgUnix(frame, unix.UnixRights(int(fd)), nil)
	})
	if cerr != nil {
		return false, cerr // closed by the caller: nothing sent
	}
	if err == nil && n < len(frame) {
		_, err = l.conn.Write(frame[n:])
	}
	if n > 0 && err != nil {
		l.broken = true
		l.conn.CloseWrite()
	}
	return n > 0, err
}
