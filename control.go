//go:build linux || darwin

package baton

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/batonhq/baton/internal/ownersock"
)

// The control socket (Options.Control) lets a new instance of the program,
// started by somebody else — a supervisor restarting the service — take the
// sockets over from the instance that serves. The serving generation
// listens on it; a new instance connects, sends a takeover frame with its
// pid, and from there the handoff is the one a child gets over its
// socketpair: hello, fds, ready, ack.
//
// Only the owner may use it: the rule is internal/ownersock's, the one
// implementation baton has of it (the master's control socket uses it
// too). The socket lives in a directory that must be ours and closed to
// everybody else (0700: nobody else can even reach the socket), and both
// ends check the other's uid with SO_PEERCRED anyway; the takeover
// frame's pid must be the connecting process's own. Linux only: the
// credentials need SO_PEERCRED, and the successor's end a pidfd.

// controlTimeout bounds how long a connection to the control socket may
// take to say what it wants: a new instance sends its takeover frame right
// after connecting, so five seconds is generous even on a loaded machine,
// and a silent peer cannot hold a goroutine for long.
const controlTimeout = 5 * time.Second

// controlRestart is the supervisor-restart topology's part of an
// Upgrader (Options.Control): the control socket through which a new
// instance, started by somebody else, takes the sockets over
// (control_linux.go), and — under daemontools, runit or s6 — the interim
// generation that bridges a restart (interim.go). Every other topology
// leaves it nil.
type controlRestart struct {
	path    string        // Options.Control as given, for messages
	abs     string        // path resolved against the initial working directory
	dir     supervisorDir // "" unless a supervisor of the daemontools family runs us
	interim bool          // this process is the interim generation

	// Guarded by Upgrader.mu.
	server        *ownersock.Listener // the socket we serve, from Ready on
	execRequested bool                // a SIGHUP asked for an upgrade in place (Exec)
}

// envInterim marks an interim generation; its value is unused.
const envInterim = "BATON_INTERIM"

// newControlRestart returns the control part of an Upgrader for the
// control socket at path, nil if there is none. Either way the interim
// mark is scrubbed from the environment: it is for this process only.
func newControlRestart(path string) *controlRestart {
	_, interim := os.LookupEnv(envInterim)
	os.Unsetenv(envInterim)
	if path == "" {
		return nil
	}
	return &controlRestart{path: path, abs: absFromInitial(path), dir: findSupervisor(), interim: interim}
}

// check refuses, before anything serves, a control path that Ready could
// not take (see preflight): anything but a socket is somebody else's.
func (c *controlRestart) check() error {
	if err := ownersock.CheckPath(c.abs); err != nil {
		return fmt.Errorf("baton: control socket %s: %w", c.path, err)
	}
	return nil
}

// listen binds the control socket under a temporary name beside its path;
// Ready commits it once the predecessor has acknowledged, so the path
// always leads to a listening socket (the predecessor's until then), and a
// directory we cannot use fails this generation before the predecessor
// drains.
func (c *controlRestart) listen() (*ownersock.Listener, error) {
	l, err := ownersock.Listen(c.abs)
	if err != nil {
		return nil, fmt.Errorf("baton: control socket %s: %w", c.path, err)
	}
	return l, nil
}

// takeOver asks the instance serving on the control socket for its
// descriptors. Nobody serving there is not an error: this is a first start.
func (u *Upgrader) takeOver() error {
	conn, pid, err := dialTakeover(u.ctl.abs)
	if err != nil {
		return fmt.Errorf("baton: control socket %s: %w", u.ctl.path, err)
	}
	if conn == nil {
		u.log.Info("no running instance on the control socket: starting fresh", "control", u.ctl.path)
		return nil
	}
	p, entries, err := adoptConn(conn, pid, u.opts.upgradeTimeout(), u.handed)
	if err != nil {
		// Whatever listens there may not be ours at all: say where.
		return fmt.Errorf("baton: control socket %s: %w", u.ctl.path, err)
	}
	u.parent, u.gen = p, p.generation
	p.relay.Store(u.relays())
	u.reg.inherit(entries)
	u.log.Info("took over through the control socket", "generation", u.gen, "predecessor", pid, "fds", len(entries))
	return nil
}

// serveControl answers takeover requests until the listener is closed.
func (u *Upgrader) serveControl(l *ownersock.Listener) {
	for {
		conn, cred, err := l.Accept()
		var perr *ownersock.PeerError
		switch {
		case errors.As(err, &perr):
			u.log.Warn("control socket: refused a connection from another user", "pid", perr.Cred.PID, "uid", perr.Cred.UID, "err", err)
			continue
		case err != nil:
			return // closed
		}
		go u.controlConn(conn, cred.PID)
	}
}

// controlConn serves one connection of ours: a new instance asking to take
// over.
func (u *Upgrader) controlConn(conn *net.UnixConn, pid int) {
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
	}, u.opts.Probation)
	var ce *ChildError
	if err != nil && !errors.As(err, &ce) {
		// Refused before the handshake began: not ready, stopped, busy.
		refuse(err.Error())
	}
}

// dialTakeover connects to the control socket at path and asks for a
// takeover. It returns a nil conn and no error when nobody serves there:
// no directory, no socket file, or a stale one.
func dialTakeover(path string) (conn *net.UnixConn, pid int, err error) {
	conn, cred, err := ownersock.Dial(path, controlTimeout)
	if err != nil || conn == nil {
		return nil, 0, err
	}
	body, err := encodeReady(readyMsg{PID: os.Getpid()})
	if err == nil {
		var frame []byte
		if frame, err = encodeFrame(frameTakeover, body); err == nil {
			conn.SetWriteDeadline(time.Now().Add(controlTimeout))
			err = sendFrame(conn, frame, nil)
			conn.SetWriteDeadline(time.Time{})
		}
	}
	if err != nil {
		conn.Close()
		return nil, 0, err
	}
	return conn, cred.PID, nil
}
