package supervisor

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// serveControl answers the control socket until it is closed. Each
// connection carries one request; a peer of another uid (SO_PEERCRED) is
// refused without a word.
func (m *Master) serveControl(ln *net.UnixListener) {
	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			m.log.Warn("control socket", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		go m.serveConn(c)
	}
}

func (m *Master) serveConn(c *net.UnixConn) {
	defer c.Close()
	uid, pid, err := peerCred(c)
	if err != nil || uid != os.Geteuid() {
		m.log.Warn("refused a connection from another user on the control socket", "uid", uid, "pid", pid, "err", err)
		return
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReaderSize(c, 512)
	line, err := readLine(br, MaxRequestSize)
	if err != nil {
		c.Write(encodeLine(Response{Error: err.Error()}))
		return
	}
	req, err := DecodeRequest(line)
	if err != nil {
		c.Write(encodeLine(Response{Error: err.Error()}))
		return
	}
	c.SetReadDeadline(time.Time{})
	var resp Response
	switch req.Cmd {
	case CmdReload:
		res, err := m.Reload(context.Background())
		resp = Response{OK: err == nil, Result: &res}
		if err != nil {
			resp.Error = err.Error()
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
		resp = Response{Error: err.Error()}
	case CmdStop:
		m.stopAnswers.Add(1)
		defer m.stopAnswers.Add(-1)
		m.Stop()
		resp = Response{OK: true}
	}
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	c.Write(encodeLine(resp))
}

func peerCred(c *net.UnixConn) (uid, pid int, err error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return -1, 0, err
	}
	if cerr != nil {
		return -1, 0, os.NewSyscallError("getsockopt(SO_PEERCRED)", cerr)
	}
	return int(cred.Uid), int(cred.Pid), nil
}
