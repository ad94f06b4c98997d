package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/batonhq/baton/internal/ownersock"
)

// The control socket: its file in the owner-only runtime directory, and
// the server that answers on it.

// controlIOTimeout bounds the reading of a request and the writing of a
// response: one short line each way. A client that connects and says
// nothing would otherwise hold a goroutine of the master for good.
const controlIOTimeout = 10 * time.Second

// acceptPause is the pause after an Accept that failed other than by the
// listener being closed (EMFILE, ENFILE): the error lasts until something
// closes a descriptor, an event the master cannot wait on, and retrying
// at once would spin.
const acceptPause = 10 * time.Millisecond

// openControl puts the control socket in place with internal/ownersock:
// in an owner-only directory (made 0700, refused otherwise), over nothing
// or over a socket no one answers on — left by a master that was killed.
// Anything else at the path is refused and left alone: a socket someone
// answers on (ErrControlInUse), a regular file, a symbolic link (never
// followed), a directory.
func (m *Master) openControl() error {
	path := m.cfg.Control
	l, err := ownersock.Listen(path)
	var derr *ownersock.DirError
	var nerr *ownersock.NotSocketError
	switch {
	case errors.As(err, &derr):
		return fmt.Errorf("supervisor: the control socket's directory %w", err)
	case errors.As(err, &nerr):
		return &controlError{path, nerr.What() + " is in the way; not ours to remove", err}
	case err != nil:
		return &controlError{path, err.Error(), err}
	}
	live, err := ownersock.Live(path)
	switch {
	case live:
		err = &controlError{path, "something answers there (another master?); not ours to remove", ErrControlInUse}
	case err != nil:
		err = &controlError{path, err.Error(), err}
	default:
		err = l.Commit()
	}
	if err != nil {
		l.Close(false)
		return err
	}
	m.ctl = l
	return nil
}

// controlError is an error about the control socket's path; it wraps
// what a caller may branch on (ErrControlInUse, ownersock's errors).
type controlError struct {
	path, reason string
	err          error
}

func (e *controlError) Error() string {
	return "supervisor: control socket " + e.path + ": " + e.reason
}

func (e *controlError) Unwrap() error { return e.err }

// closeControl closes the control socket and removes its file if it is
// still the master's own: another master may have taken the path since.
func (m *Master) closeControl() {
	if m.ctl != nil {
		m.ctl.Close(true)
		m.ctl = nil
	}
}

// serveControl answers the control socket until it is closed. Each
// connection carries one request; a peer of another uid (SO_PEERCRED) is
// refused without a word: ownersock closes its connection.
func (m *Master) serveControl(ln *ownersock.Listener) {
	for {
		c, cred, err := ln.Accept()
		var perr *ownersock.PeerError
		switch {
		case errors.As(err, &perr):
			m.log.Warn("refused a connection from another user on the control socket", "uid", cred.UID, "pid", cred.PID, "err", err)
			continue
		case errors.Is(err, net.ErrClosed):
			return
		case err != nil:
			m.log.Warn("control socket", "err", err)
			time.Sleep(acceptPause)
			continue
		}
		go m.serveConn(c)
	}
}

func (m *Master) serveConn(c *net.UnixConn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(controlIOTimeout))
	br := bufio.NewReaderSize(c, 512)
	line, err := readLine(br, maxRequestSize)
	if err != nil {
		c.Write(encodeLine(errBadRequest(err)))
		return
	}
	req, err := decodeRequest(line)
	if err != nil {
		c.Write(encodeLine(errBadRequest(err)))
		return
	}
	c.SetReadDeadline(time.Time{})
	var resp Response
	switch req.Cmd {
	case CmdReload:
		res, err := m.Reload(context.Background())
		resp = Response{OK: err == nil, Result: &res}
		if err != nil {
			resp.Code, resp.Error = codeOf(err), err.Error()
			// The result carries the reason too: "baton reload --json"
			// prints only the result.
			if res.Error == "" {
				res.Error = resp.Error
			}
		}
	case CmdStatus:
		st := m.Status()
		resp = Response{OK: true, Status: &st}
	case CmdExec:
		reply := make(chan error, 1)
		select {
		case m.events <- execReq{answer: c, reply: reply}:
			// On success this image is gone, and the new one answers.
			err = <-reply
		case <-m.done:
			err = ErrStopped
		}
		resp = failure(err)
	case CmdStop:
		answered := make(chan struct{})
		defer close(answered)
		m.stop(answered)
		resp = Response{OK: true}
	}
	c.SetWriteDeadline(time.Now().Add(controlIOTimeout))
	c.Write(encodeLine(resp))
}
