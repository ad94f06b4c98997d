package ownersock

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
)

// ErrNotSupported is returned where the platform lacks what the rule
// needs (SO_PEERCRED, Unix file ownership).
var ErrNotSupported = errors.New("ownersock: owner-only sockets need Linux")

// ErrOtherUser is what a *PeerError wraps when the peer runs as another
// uid.
var ErrOtherUser = errors.New("ownersock: the peer runs as another user")

// ErrLive says that something answers on a socket that was to be
// replaced: another process serves there.
var ErrLive = errors.New("something answers there")

// Cred is a peer's identity as the kernel recorded it when the connection
// was made (connect(2) or socketpair(2)): later setuid calls do not
// change it.
type Cred struct {
	PID, UID, GID int
}

// PeerError refuses a peer. Err is ErrOtherUser when the peer's uid is
// not our effective uid, or the reason its credentials could not be read.
// Path is the socket dialed, when we dialed (Dial): the peer is then the
// process that serves there.
type PeerError struct {
	Cred Cred
	Path string
	Err  error
}

func (e *PeerError) Error() string {
	switch {
	case !errors.Is(e.Err, ErrOtherUser):
		return "reading the peer's credentials: " + e.Err.Error()
	case e.Path != "":
		return fmt.Sprintf("%s is served by uid %d (pid %d), not by us (uid %d)", e.Path, e.Cred.UID, e.Cred.PID, os.Geteuid())
	}
	return fmt.Sprintf("peer pid %d runs as uid %d, not as us (uid %d)", e.Cred.PID, e.Cred.UID, os.Geteuid())
}

func (e *PeerError) Unwrap() error { return e.Err }

// ownerOnly is the rule every *DirError restates, so that a refusal tells
// what would be accepted.
const ownerOnly = "a socket's directory must be a directory of ours that only we may enter"

// DirError refuses a socket's directory: Reason says what is wrong with
// it and Fix, if not empty, how to put it right.
type DirError struct {
	Dir    string
	Reason string // "is a symlink: ...", "belongs to uid 65534, not to us (uid 1000)", "has mode 0755: ..."
	Fix    string // "chmod 700 /run/app", or ""
}

func (e *DirError) Error() string {
	s := e.Dir + " " + e.Reason + "; " + ownerOnly
	if e.Fix != "" {
		s += " (" + e.Fix + ")"
	}
	return s
}

// NotSocketError refuses a path that holds something other than a
// socket; Mode is what is there. It was left as it was.
type NotSocketError struct {
	Path string
	Mode fs.FileMode
}

func (e *NotSocketError) Error() string {
	return e.Path + " is not a socket: " + e.What() + " is in the way; not ours to remove or follow"
}

// What names what is in the way: "a regular file", "a symbolic link", ….
func (e *NotSocketError) What() string {
	switch mode := e.Mode; {
	case mode&fs.ModeSymlink != 0:
		return "a symbolic link"
	case mode.IsDir():
		return "a directory"
	case mode.IsRegular():
		return "a regular file"
	}
	return "a file of type " + e.Mode.Type().String()
}

// modeString prints a permission like chmod takes it: 0755.
func modeString(m fs.FileMode) string {
	return "0" + strconv.FormatUint(uint64(m.Perm()), 8)
}
