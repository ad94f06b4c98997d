package ownersock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// PeerCredFD returns the credentials of the process at the other end of
// the Unix socket fd (SO_PEERCRED).
func PeerCredFD(fd int) (Cred, error) {
	c, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		return Cred{}, os.NewSyscallError("getsockopt(SO_PEERCRED)", err)
	}
	return Cred{PID: int(c.Pid), UID: int(c.Uid), GID: int(c.Gid)}, nil
}

// PeerCred returns the credentials of the process at the other end of c.
// It reaches the descriptor through SyscallConn: Fd() would switch the
// socket to blocking mode, for every holder of it.
func PeerCred(c syscall.Conn) (Cred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return Cred{}, err
	}
	var cred Cred
	var cerr error
	if err := rc.Control(func(fd uintptr) { cred, cerr = PeerCredFD(int(fd)) }); err != nil {
		return Cred{}, err
	}
	return cred, cerr
}

// CheckPeer returns the peer's credentials, and a *PeerError if they
// cannot be read or name a uid other than our effective uid
// (errors.Is(err, ErrOtherUser)).
func CheckPeer(c syscall.Conn) (Cred, error) {
	cred, err := PeerCred(c)
	if err != nil {
		return cred, &PeerError{Cred: cred, Err: err}
	}
	if cred.UID != os.Geteuid() {
		return cred, &PeerError{Cred: cred, Err: ErrOtherUser}
	}
	return cred, nil
}

// identity names the socket file a Listener bound, so that it never
// removes a successor's: os.SameFile, without keeping a FileInfo.
type identity struct{ dev, ino uint64 }

func identityOf(fi fs.FileInfo) identity {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return identity{dev: uint64(st.Dev), ino: st.Ino}
	}
	return identity{}
}

// A Listener is an owner-only Unix socket: in a directory CheckDir
// accepts, mode 0600, answering peers of our uid only.
type Listener struct {
	path string
	tmp  string // the name it is bound under until Commit; "" after
	ln   *net.UnixListener
	file identity
}

// Listen makes path's directory (MakeDir), checks that nothing but a
// socket is at path (CheckPath), and binds a socket under a temporary
// name beside it, ".BASE.PID", with mode 0600. Commit puts it at path.
// The listener is not unlinked by the runtime on Close: see Close.
func Listen(path string) (*Listener, error) {
	dir := filepath.Dir(path)
	if err := MakeDir(dir); err != nil {
		return nil, err
	}
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d", filepath.Base(path), os.Getpid()))
	// Left by a crashed process that had our pid: the directory is ours,
	// so nobody else could have put it there.
	os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	// The file outlives this listener when a successor takes it over by
	// rename; Close removes it only if it is still ours.
	ln.SetUnlinkOnClose(false)
	fi, err := os.Lstat(tmp)
	if err == nil {
		// The directory already keeps others out; 0600 says the same
		// to anyone who copies the socket's directory's mode.
		err = os.Chmod(tmp, 0o600)
	}
	if err != nil {
		ln.Close()
		os.Remove(tmp)
		return nil, err
	}
	return &Listener{path: path, tmp: tmp, ln: ln, file: identityOf(fi)}, nil
}

// Adopt makes a Listener of a socket already at path, inherited as f
// from an earlier image of this process (across exec). inode is the
// socket file's inode as that image recorded it (Inode), or 0 to take
// whatever is at path now. f may be closed after.
func Adopt(f *os.File, path string, inode uint64) (*Listener, error) {
	fl, err := net.FileListener(f)
	if err != nil {
		return nil, err
	}
	ln, ok := fl.(*net.UnixListener)
	if !ok {
		fl.Close()
		return nil, fmt.Errorf("%s: adopted a %T, not a Unix socket", path, fl)
	}
	ln.SetUnlinkOnClose(false)
	l := &Listener{path: path, ln: ln}
	if fi, err := os.Lstat(path); err == nil {
		l.file = identityOf(fi)
	}
	if inode != 0 && inode != l.file.ino {
		// Replaced since: keep the device, which a rename within the
		// directory never changes, and the inode that was ours.
		l.file.ino = inode
	}
	return l, nil
}

// Commit renames the socket into place at path, over the socket there if
// any. On failure the listener is closed and its temporary file removed.
func (l *Listener) Commit() error {
	if l.tmp == "" {
		return nil
	}
	if err := os.Rename(l.tmp, l.path); err != nil {
		l.ln.Close()
		os.Remove(l.tmp)
		return err
	}
	l.tmp = ""
	return nil
}

// Accept waits for a connection and returns it with its peer's
// credentials. A peer of another uid, or one whose credentials cannot be
// read, is refused: its connection is closed and the error is a
// *PeerError, after which the caller should log it and call Accept again.
// Any other error is the listener's (net.ErrClosed after Close).
func (l *Listener) Accept() (*net.UnixConn, Cred, error) {
	c, err := l.ln.AcceptUnix()
	if err != nil {
		return nil, Cred{}, err
	}
	cred, err := CheckPeer(c)
	if err != nil {
		c.Close()
		return nil, cred, err
	}
	return c, cred, nil
}

// Close stops listening. With unlink it also removes the socket file, if
// it is still the one this listener bound: a successor's stays. A
// listener not yet committed always removes its temporary file.
func (l *Listener) Close(unlink bool) {
	l.ln.Close()
	if l.tmp != "" {
		os.Remove(l.tmp)
		return
	}
	if !unlink {
		return
	}
	if fi, err := os.Lstat(l.path); err == nil && identityOf(fi) == l.file {
		os.Remove(l.path)
	}
}

// Replaced reports whether path now leads to a file other than the
// socket this listener bound: a successor's. Nothing at path is not
// "replaced" — a successor renames its socket over ours, never leaves a
// gap.
func (l *Listener) Replaced() bool {
	fi, err := os.Lstat(l.path)
	return err == nil && identityOf(fi) != l.file
}

// Path is where the socket is, or will be after Commit.
func (l *Listener) Path() string { return l.path }

// Addr is the listener's address: its temporary name until Commit.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Inode is the inode of the socket file this listener bound, for Adopt.
func (l *Listener) Inode() uint64 { return l.file.ino }

// SyscallConn gives the listening socket's descriptor, to pass it on
// across exec (then Adopt it) without Fd().
func (l *Listener) SyscallConn() (syscall.RawConn, error) { return l.ln.SyscallConn() }

// Dial connects to the owner-only socket at path, with DialContext.
func Dial(path string, timeout time.Duration) (*net.UnixConn, Cred, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return DialContext(ctx, path)
}

// DialContext connects to the owner-only socket at path and checks who
// answers. Nobody serving is a nil connection with no error: no
// directory, nothing at path, or a stale socket whose listener is gone.
// The directory must pass CheckDir (*DirError), path must be a socket
// (*NotSocketError: a symlink is never followed), and the peer must run
// as our uid (*PeerError with Path set: "PATH is served by uid N"; the
// connection is then closed).
func DialContext(ctx context.Context, path string) (*net.UnixConn, Cred, error) {
	if err := CheckDir(filepath.Dir(path)); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, Cred{}, nil
		}
		return nil, Cred{}, err
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, Cred{}, nil
	case err != nil:
		return nil, Cred{}, err
	case fi.Mode()&fs.ModeSocket == 0:
		return nil, Cred{}, &NotSocketError{Path: path, Mode: fi.Mode()}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if stale(err) {
		return nil, Cred{}, nil
	}
	if err != nil {
		return nil, Cred{}, err
	}
	uc := c.(*net.UnixConn)
	cred, err := CheckPeer(uc)
	if err != nil {
		uc.Close()
		if pe, ok := err.(*PeerError); ok {
			pe.Path = path
		}
		return nil, cred, err
	}
	return uc, cred, nil
}
