package supervisor

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The control socket: its file in the owner-only runtime directory, and
// the server that answers on it.

// staleDialTimeout bounds the dial that tells a live control socket from
// one a killed master left: a live master accepts at once (the kernel
// does, before any Accept), a stale socket refuses at once; a second is
// for a machine too loaded to schedule either.
const staleDialTimeout = time.Second

// controlIOTimeout bounds the reading of a request and the writing of a
// response: one short line each way. A client that connects and says
// nothing would otherwise hold a goroutine of the master for good.
const controlIOTimeout = 10 * time.Second

// acceptPause is the pause after an Accept that failed other than by the
// listener being closed (EMFILE, ENFILE): the error lasts until something
// closes a descriptor, an event the master cannot wait on, and retrying
// at once would spin.
const acceptPause = 10 * time.Millisecond

// openControl makes the owner-only runtime directory and the control
// socket in it.
func (m *Master) openControl() error {
	if err := os.MkdirAll(m.runDir, 0o700); err != nil {
		return fmt.Errorf("supervisor: runtime directory: %w", err)
	}
	fi, err := os.Lstat(m.runDir)
	if err != nil {
		return err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 || st == nil || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("supervisor: the control socket's directory %s must be a directory of ours that only we may enter (chmod 700 %s)", m.runDir, m.runDir)
	}
	if err := clearControl(m.cfg.Control); err != nil {
		return err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: m.cfg.Control, Net: "unix"})
	if err != nil {
		return fmt.Errorf("supervisor: control socket: %w", err)
	}
	// Removed by closeControl, and only if the file is still this one:
	// the listener would unlink whatever is at the path by then.
	ln.SetUnlinkOnClose(false)
	m.ctl = ln
	m.ctlIno = inodeAt(m.cfg.Control)
	return os.Chmod(m.cfg.Control, 0o600)
}

// controlError is an error about the control socket's path; it wraps
// what a caller may branch on (ErrControlInUse, an fs error).
type controlError struct {
	path, reason string
	err          error
}

func (e *controlError) Error() string {
	return "supervisor: control socket " + e.path + ": " + e.reason
}

func (e *controlError) Unwrap() error { return e.err }

// clearControl makes room for the control socket at path: nothing there,
// or a socket no one answers on — left by a master that was killed, and
// removed. Anything else is refused and left alone: a socket someone
// answers on (ErrControlInUse), a regular file, a symbolic link (never
// followed), a directory.
func clearControl(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return &controlError{path, err.Error(), err}
	case fi.Mode()&fs.ModeSocket == 0:
		return &controlError{path, fileKind(fi.Mode()) + " is in the way; not ours to remove", nil}
	}
	if c, err := net.DialTimeout("unix", path, staleDialTimeout); err == nil {
		c.Close()
		return &controlError{path, "something answers there (another master?); not ours to remove", ErrControlInUse}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return &controlError{path, "removing a stale socket: " + err.Error(), err}
	}
	return nil
}

func fileKind(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeSymlink != 0:
		return "a symbolic link"
	case mode.IsDir():
		return "a directory"
	case mode.IsRegular():
		return "a regular file"
	}
	return "a file of type " + mode.Type().String()
}

// inodeAt is the inode of the file at path (not followed), 0 if none.
func inodeAt(path string) uint64 {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// closeControl closes the control socket and removes its file if it is
// still the master's own.
func (m *Master) closeControl() {
	if m.ctl == nil {
		return
	}
	m.ctl.Close()
	// Only our own socket: another master may have taken the path since
	// (after this one's file was removed), and its socket is not ours to
	// remove.
	if m.ctlIno != 0 && inodeAt(m.cfg.Control) == m.ctlIno {
		os.Remove(m.cfg.Control)
	}
	m.ctl = nil
}

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
			time.Sleep(acceptPause)
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
