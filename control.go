//go:build linux || darwin

package baton

import (
	"fmt"
	"os"
)

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
	server        *controlServer // the socket we serve, from Ready on
	execRequested bool           // a SIGHUP asked for an upgrade in place (Exec)
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
// not take (see preflight).
func (c *controlRestart) check() error {
	if err := checkControlPath(c.abs); err != nil {
		return fmt.Errorf("baton: control socket %s: %w", c.path, err)
	}
	return nil
}

// listen binds the control socket under a temporary name; Ready commits it.
func (c *controlRestart) listen() (*controlServer, error) {
	s, err := listenControl(c.abs)
	if err != nil {
		return nil, fmt.Errorf("baton: control socket %s: %w", c.path, err)
	}
	return s, nil
}

// takeOver asks the instance serving on the control socket for its
// descriptors. Nobody serving there is not an error: this is a first start.
func (u *Upgrader) takeOver() error {
	conn, pid, err := dialControl(u.ctl.abs)
	if err != nil {
		return fmt.Errorf("baton: control socket %s: %w", u.ctl.path, err)
	}
	if conn == nil {
		u.log.Info("no running instance on the control socket: starting fresh", "control", u.ctl.path)
		return nil
	}
	p, entries, err := adoptConn(conn, pid, u.opts.upgradeTimeout())
	if err != nil {
		// Whatever listens there may not be ours at all: say where.
		return fmt.Errorf("baton: control socket %s: %w", u.ctl.path, err)
	}
	u.parent, u.gen = p, p.generation
	u.reg.inherit(entries)
	u.log.Info("took over through the control socket", "generation", u.gen, "predecessor", pid, "fds", len(entries))
	return nil
}
