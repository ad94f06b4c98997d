// Package ownersock is baton's one implementation of the owner-only Unix
// socket: the rule that only processes of our own user may reach a
// control socket, and the way such a socket is put in place and taken
// down. The library's control socket (Options.Control: a new instance
// takes over from the serving one) and the master's control socket
// (reload, status, stop, exec) both come here, so the rule cannot drift
// between them.
//
// The rule has two layers, each enough on its own:
//
//   - The directory. The socket lives in a directory that is ours (owned
//     by our effective uid), closed to group and others (mode 0700: nobody
//     else can even reach the socket inside), and named directly — not
//     through a symlink, which whoever owns the link's parent could swap
//     for one to a directory they control. CheckDir enforces it and says
//     how to fix what it refuses ("chmod 700 DIR").
//   - The peer. Both ends check the other's uid with SO_PEERCRED, read
//     through SyscallConn (never Fd(), which would switch the socket to
//     blocking mode for every holder): CheckPeer, Listener.Accept, Dial.
//
// The path. What sits at the socket's path must be nothing, or a socket.
// Anything else — a regular file, a symlink (never followed), a directory
// — is somebody else's, put there by mistake or on purpose, and is refused
// and left alone (*NotSocketError names what is in the way).
//
// Putting a socket in place (Listen, Commit). A listener is bound under a
// temporary name beside the path (".BASE.PID") and renamed into place by
// Commit, so the path always leads to a listening socket: the previous
// owner's until the rename, ours after. A new generation that cannot bind
// fails before its predecessor is told to drain. Close(unlink) removes the
// file only if it is still the one we bound (a successor's stays).
//
// The two callers differ in one rule, and express it with the same calls:
//
//	// The library: a successor replaces its live predecessor's socket.
//	l, err := ownersock.Listen(path)
//	... hand over ...
//	err = l.Commit()
//
//	// The master: replace only a dead socket, refuse a live one.
//	l, err := ownersock.Listen(path)
//	if live, err := ownersock.Live(path); live || err != nil {
//		l.Close(false) // ErrLive: another master answers there
//	}
//	err = l.Commit()
//
// Errors are typed, for errors.As and errors.Is: *DirError, *NotSocketError,
// *PeerError (errors.Is(err, ErrOtherUser) for a peer of another uid),
// ErrLive, ErrNotSupported. Their text carries no package prefix — like
// *fs.PathError it starts with the path — so the caller's own prefix reads
// well in front of it.
//
// Platforms: the directory and path checks work on every Unix; peer
// credentials, Listener and Dial need SO_PEERCRED and are Linux only
// (ErrNotSupported elsewhere). On other systems everything returns
// ErrNotSupported.
package ownersock
