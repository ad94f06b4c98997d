package baton

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// The control socket (Options.Control) lets a new instance of the program,
// started by somebody else — a supervisor restarting the service — take the
// sockets over from the instance that serves. The serving generation
// listens on it; a new instance connects, sends a takeover frame with its
// pid, and from there the handoff is the one a child gets over its
// socketpair: hello, fds, ready, ack.
//
// Only the owner may use it. The socket lives in a directory that must be
// ours and closed to everybody else (0700: nobody else can even reach the
// socket), and both ends check the other's uid with SO_PEERCRED anyway;
// the takeover frame's pid must be the connecting process's own.

// controlTimeout bounds how long a connection to the control socket may
// take to say what it wants.
const controlTimeout = 5 * time.Second

// checkControlDir refuses a directory that others could reach: one not
// owned by us, open to group or others, or a symlink (whoever owns the
// link's parent could swap it).
func checkControlDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		return fmt.Errorf("%s is a symlink: name the directory itself, so nobody can redirect the control socket by changing the link", dir)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: no owner information", dir)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("directory %s belongs to uid %d, not to us (uid %d)", dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("directory %s has mode %#o: others could reach the control socket (chmod 700 %s)", dir, fi.Mode().Perm(), dir)
	}
	return nil
}

// checkControlPath refuses a path that holds anything but a socket.
// commit renames our socket over whatever is there: the predecessor's
// socket, or a stale one. Anything else — a regular file, a symlink, a
// directory — is somebody else's, put there by mistake or on purpose, and
// must be neither destroyed nor followed.
func checkControlPath(path string) error {
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		return fmt.Errorf("there is a file there that is not a socket (%s): not replacing it", fileType(fi))
	}
	return nil
}

// fileType names what fi is, for errors.
func fileType(fi os.FileInfo) string {
	switch m := fi.Mode(); {
	case m.IsRegular():
		return "a regular file"
	case m&os.ModeSymlink != 0:
		return "a symlink"
	case m.IsDir():
		return "a directory"
	}
	return "mode " + fi.Mode().String()
}

// controlServer is the serving generation's end of the control socket.
type controlServer struct {
	path string
	tmp  string // the name it is bound under until commit
	ln   *net.UnixListener
	// file identifies the socket file we bound, so that we never remove a
	// successor's.
	file os.FileInfo
}

// listenControl binds the control socket under a temporary name next to
// path; commit renames it into place. So the path always leads to a
// listening socket — the predecessor's until the rename, ours after — and
// a directory we cannot use fails this generation before the predecessor
// is told to drain.
func listenControl(path string) (*controlServer, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if err := checkControlDir(dir); err != nil {
		return nil, err
	}
	if err := checkControlPath(path); err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d", filepath.Base(path), os.Getpid()))
	os.Remove(tmp) // left by a crashed process that had our pid
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false)
	fi, err := os.Lstat(tmp)
	if err == nil {
		err = os.Chmod(tmp, 0o600)
	}
	if err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	return &controlServer{path: path, tmp: tmp, ln: ln, file: fi}, nil
}

// commit puts the socket at its path.
func (s *controlServer) commit() error {
	if err := os.Rename(s.tmp, s.path); err != nil {
		s.ln.Close()
		os.Remove(s.tmp)
		return err
	}
	s.tmp = ""
	return nil
}

// close stops listening. With unlink it also removes the socket file,
// unless a successor has put its own there.
func (s *controlServer) close(unlink bool) {
	s.ln.Close()
	if s.tmp != "" {
		os.Remove(s.tmp)
		return
	}
	if !unlink {
		return
	}
	if fi, err := os.Lstat(s.path); err == nil && os.SameFile(fi, s.file) {
		os.Remove(s.path)
	}
}

// replaced reports whether the path now leads to a file other than the
// socket we bound: a successor's.
func (s *controlServer) replaced() bool {
	fi, err := os.Lstat(s.path)
	return err == nil && !os.SameFile(fi, s.file)
}

// connCred returns the pid and uid of the process at the other end of c.
func connCred(c *net.UnixConn) (pid, uid int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var cerr error
	if err := rc.Control(func(fd uintptr) { pid, uid, cerr = peerCred(int(fd)) }); err != nil {
		return 0, 0, err
	}
	return pid, uid, cerr
}

// serveControl answers takeover requests until the listener is closed.
func (u *Upgrader) serveControl(s *controlServer) {
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		go u.controlConn(conn)
	}
}

// controlConn serves one connection: a new instance asking to take over.
func (u *Upgrader) controlConn(conn *net.UnixConn) {
	pid, uid, err := connCred(conn)
	if err != nil || uid != os.Geteuid() {
		u.log.Warn("control socket: refused a connection from another user", "pid", pid, "uid", uid, "err", err)
		conn.Close()
		return
	}
	refuse := func(reason string) {
		u.log.Warn("control socket: refused a takeover", "pid", pid, "reason", reason)
		if frame, err := encodeFrame(frameAbort, encodeAbort(abortMsg{Reason: reason})); err == nil {
			conn.SetWriteDeadline(time.Now().Add(time.Second))
			sendFrame(conn, frame, nil)
		}
		conn.Close()
	}
	conn.SetDeadline(time.Now().Add(controlTimeout))
	typ, body, fds, err := recvFrame(conn)
	closeFds(fds)
	switch {
	case err != nil:
		refuse(fmt.Sprintf("reading the request: %v", err))
		return
	case typ != frameTakeover || len(fds) > 0:
		refuse(fmt.Sprintf("want a takeover request, got a %q frame", typ))
		return
	}
	m, err := parseReady(body)
	if err != nil {
		refuse(err.Error())
		return
	}
	if m.PID != pid {
		refuse(fmt.Sprintf("takeover asked for pid %d by pid %d", m.PID, pid))
		return
	}
	u.log.Info("control socket: a new instance asks to take over", "pid", pid)
	err = u.handover(func(gen int, fds *fdSnapshot, deadline time.Time) (*child, error) {
		return peerChild(conn, pid, gen, fds, deadline)
	})
	var ce *ChildError
	if err != nil && !errors.As(err, &ce) {
		// Refused before the handshake began: not ready, stopped, busy.
		refuse(err.Error())
	}
}

// dialControl connects to the control socket at path and asks for a
// takeover. It returns a nil conn and no error when nobody serves there:
// no directory, no socket file, or a stale one.
func dialControl(path string) (conn *net.UnixConn, pid int, err error) {
	if err := checkControlDir(filepath.Dir(path)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, 0, nil
		}
		return nil, 0, err
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, 0, nil
	case err != nil:
		return nil, 0, err
	case fi.Mode()&os.ModeSocket == 0:
		return nil, 0, fmt.Errorf("%s is not a socket", path)
	}
	conn, err = net.DialUnix("unix", nil, &net.UnixAddr{Name: path, Net: "unix"})
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
		return nil, 0, nil // a stale file: whoever made it is gone
	}
	if err != nil {
		return nil, 0, err
	}
	pid, uid, err := connCred(conn)
	if err == nil && uid != os.Geteuid() {
		err = fmt.Errorf("%s is served by uid %d, not by us (uid %d)", path, uid, os.Geteuid())
	}
	if err == nil {
		var body []byte
		if body, err = encodeReady(readyMsg{PID: os.Getpid()}); err == nil {
			var frame []byte
			if frame, err = encodeFrame(frameTakeover, body); err == nil {
				conn.SetWriteDeadline(time.Now().Add(controlTimeout))
				err = sendFrame(conn, frame, nil)
				conn.SetWriteDeadline(time.Time{})
			}
		}
	}
	if err != nil {
		conn.Close()
		return nil, 0, err
	}
	return conn, pid, nil
}
