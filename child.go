//go:build linux || darwin

package baton

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"
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
}

type handshakeResult struct {
	ready readyMsg
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
		m, err := c.handshake(generation, fds)
		c.result <- handshakeResult{m, err}
	}()
}

// handshake sends hello and the descriptors, then reads the successor's
// answer.
func (c *child) handshake(generation int, fds *fdSnapshot) (readyMsg, error) {
	body, err := encodeHello(helloMsg{
		Version:    protocolVersion,
		Generation: generation,
		PID:        os.Getpid(),
		Fds:        fds.len(),
	})
	if err != nil {
		return readyMsg{}, err
	}
	hello, err := encodeFrame(frameHello, body)
	if err != nil {
		return readyMsg{}, err
	}
	if err := sendFrame(c.conn, hello, nil); err != nil {
		return readyMsg{}, c.sendFailed("sending hello", err)
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
			return readyMsg{}, c.sendFailed("sending descriptors", sendErr)
		}
		if err != nil {
			return readyMsg{}, err
		}
		i += n
	}
	typ, body, extra, err := recvFrame(c.conn)
	if len(extra) > 0 {
		closeFds(extra)
		return readyMsg{}, protoErrorf("successor sent descriptors")
	}
	if err != nil {
		// ECONNRESET: the successor exited without reading all we sent
		// (a script, a crash before New). Either way it is gone.
		if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
			return readyMsg{}, errors.New("handoff socket closed before ready")
		}
		return readyMsg{}, err
	}
	switch typ {
	case frameReady:
		return parseReady(body)
	case frameAbort:
		return readyMsg{}, &refusedError{parseAbort(body).Reason}
	default:
		return readyMsg{}, protoErrorf("unexpected %q frame from successor", typ)
	}
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

// ack tells the successor that this generation has committed to the
// handover and drains. After it, the successor owns the service.
func (c *child) ack() error {
	frame, err := encodeFrame(frameAck, nil)
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
// its PID file and control socket name it now. Only one caller may read
// the handoff socket after the ack; Exec is that one.
func (c *child) waitServing(deadline time.Time) error {
	c.conn.SetReadDeadline(deadline)
	defer c.conn.SetReadDeadline(time.Time{})
	typ, body, fds, err := recvFrame(c.conn)
	closeFds(fds)
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", errNotServing, err)
	case typ != frameServing || len(fds) > 0:
		return fmt.Errorf("%w: got a %q frame", errNotServing, typ)
	}
	return parseServing(body)
}
