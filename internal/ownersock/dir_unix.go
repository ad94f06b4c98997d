//go:build unix

package ownersock

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"
)

// CheckDir refuses a directory that others could reach or redirect: a
// symlink, something that is not a directory, a directory not owned by
// our effective uid, or one with any permission bit for group or others.
// The refusal is a *DirError that says how to fix it. A missing directory
// is the *fs.PathError of lstat(2): errors.Is(err, fs.ErrNotExist).
func CheckDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return &DirError{Dir: dir, Reason: "is a symlink: name the directory itself, so nobody can redirect the socket by changing the link"}
	}
	if !fi.IsDir() {
		return &DirError{Dir: dir, Reason: "is not a directory"}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &DirError{Dir: dir, Reason: "has no owner the system tells"}
	}
	if euid := os.Geteuid(); int(st.Uid) != euid {
		return &DirError{Dir: dir,
			Reason: fmt.Sprintf("belongs to uid %d, not to us (uid %d)", st.Uid, euid),
			Fix:    "choose a directory of uid " + strconv.Itoa(euid)}
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return &DirError{Dir: dir,
			Reason: "has mode " + modeString(perm) + ": others could reach the socket",
			Fix:    "chmod 700 " + dir}
	}
	return nil
}

// MakeDir creates dir, and its missing parents, with mode 0700, then
// checks it with CheckDir: a directory that was there already must pass
// too. MkdirAll does not change an existing directory's mode, on
// purpose: a directory others could reach is refused, never silently
// tightened — whoever made it that way may rely on it.
func MakeDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return CheckDir(dir)
}

// CheckPath accepts nothing, or a socket, at path. Anything else — a
// regular file, a symlink (never followed), a directory — is refused with
// a *NotSocketError and left alone.
func CheckPath(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode()&fs.ModeSocket == 0:
		return &NotSocketError{Path: path, Mode: fi.Mode()}
	}
	return nil
}

// liveTimeout bounds Live's dial. A listening socket answers connect(2)
// at once, from its backlog; a full backlog makes a Unix stream connect
// wait, and a second is long enough to tell that from nobody.
const liveTimeout = time.Second

// Live reports whether something answers on the socket at path: a dial
// succeeds. Nothing at path, or a stale socket (its listener is gone),
// is false with no error. Something other than a socket at path is a
// *NotSocketError: connect(2) would follow a symlink.
func Live(path string) (bool, error) {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	case err != nil:
		return false, err
	case fi.Mode()&fs.ModeSocket == 0:
		return false, &NotSocketError{Path: path, Mode: fi.Mode()}
	}
	ctx, cancel := context.WithTimeout(context.Background(), liveTimeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if stale(err) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	c.Close()
	return true, nil
}

// stale reports whether a dial error means nobody serves at the path:
// the socket's listener is gone (ECONNREFUSED), or so is the file
// (ENOENT, removed since we looked).
func stale(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT)
}
