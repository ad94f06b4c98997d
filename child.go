//go:build linux || darwin

package baton

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"time"
)

// child is what an incumbent knows of the successor it started.
type child struct {
	path string
	proc *os.Process
	conn *net.UnixConn

	// exited is closed once the successor has been reaped; state is set
	// before. A goroutine reaps it whatever happens, so a successor never
	// lingers as a zombie, not even one that exits long after taking over.
	exited chan struct{}
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

// startChild starts the successor and begins the handshake. The returned
// child is running; the caller must wait on it through child.wait.
func startChild(path string, generation int, metas []fdMeta, fds []int, deadline time.Time) (*child, error) {
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
	proc, err := os.StartProcess(path, append([]string{os.Args[0]}, os.Args[1:]...), &os.ProcAttr{
		Dir:   initialWD,
		Env:   successorEnv(handoffFd),
		Files: files,
	})
	remote.Close()
	if err != nil {
		conn.Close()
		return nil, err
	}
	c := &child{
		path:   path,
		proc:   proc,
		conn:   conn,
		exited: make(chan struct{}),
		result: make(chan handshakeResult, 1),
	}
	go func() {
		c.state, _ = proc.Wait()
		close(c.exited)
	}()
	conn.SetDeadline(deadline)
	go func() {
		m, err := c.handshake(generation, metas, fds)
		c.result <- handshakeResult{m, err}
	}()
	return c, nil
}

// handshake sends hello and the descriptors, then reads the successor's
// answer.
func (c *child) handshake(generation int, metas []fdMeta, fds []int) (readyMsg, error) {
	body, err := encodeHello(helloMsg{
		Version:    protocolVersion,
		Generation: generation,
		PID:        os.Getpid(),
		Fds:        len(fds),
	})
	if err != nil {
		return readyMsg{}, err
	}
	hello, err := encodeFrame(frameHello, body)
	if err != nil {
		return readyMsg{}, err
	}
	if err := sendFrame(c.conn, hello, nil); err != nil {
		return readyMsg{}, fmt.Errorf("sending hello: %w", err)
	}
	for len(fds) > 0 {
		n := min(len(fds), maxFdsPerFrame)
		body, err := encodeFds(metas[:n])
		if err != nil {
			return readyMsg{}, err
		}
		frame, err := encodeFrame(frameFds, body)
		if err != nil {
			return readyMsg{}, err
		}
		if err := sendFrame(c.conn, frame, fds[:n]); err != nil {
			return readyMsg{}, fmt.Errorf("sending descriptors: %w", err)
		}
		metas, fds = metas[n:], fds[n:]
	}
	typ, body, extra, err := recvFrame(c.conn)
	if len(extra) > 0 {
		closeFds(extra)
		return readyMsg{}, protoErrorf("successor sent descriptors")
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return readyMsg{}, errors.New("handoff socket closed before ready")
		}
		return readyMsg{}, err
	}
	switch typ {
	case frameReady:
		return parseReady(body)
	case frameAbort:
		return readyMsg{}, fmt.Errorf("refused the handoff: %s", parseAbort(body).Reason)
	default:
		return readyMsg{}, protoErrorf("unexpected %q frame from successor", typ)
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
	return &exec.ExitError{ProcessState: c.state}
}

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
