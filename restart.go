//go:build linux || darwin

package baton

import (
	"os"
	"strings"
	"syscall"
	"time"
)

// Supervised restarts (Options.Control under daemontools, runit or s6).
//
// The supervisor tracks one process and starts ./run again when it exits.
// To restart without a gap, the tracked generation, told to stop while
// the supervisor still wants the service up, first hands its sockets to an
// interim generation — started detached, so the supervisor does not track
// it — and then drains and exits. The supervisor starts the next instance,
// which takes the sockets over from the interim one through the control
// socket; the interim one then drains and exits too. The kernel keeps
// accepting connections into the same listening sockets all along.
//
// The interim generation stops by itself as soon as the supervisor wants
// the service down (svc -d after svc -t, or a status written just after
// the signal), or if no new instance takes over within UpgradeTimeout: it
// is not supervised, and must not outlive the service.

// envInterim marks an interim generation; its value is unused.
const envInterim = "BATON_INTERIM"

// interimPoll is how often an interim generation looks at the supervisor.
const interimPoll = 50 * time.Millisecond

// supervised reports whether this generation restarts through an interim
// one: it has a control socket, and a supervisor runs it.
func (u *Upgrader) supervised() bool {
	return u.opts.Control != "" && u.sv != "" && !u.interim && canDetach()
}

// supervisorWantsUp reports whether the supervisor still wants the service
// up, so that a SIGTERM means a restart rather than a stop.
func (u *Upgrader) supervisorWantsUp() bool {
	st, err := u.sv.status()
	if err != nil {
		u.log.Warn("cannot read the supervisor's status; stopping", "dir", string(u.sv), "err", err)
		return false
	}
	return st.wantUp
}

// restartInterim hands the sockets to an interim generation. On success
// Exit is closed and this generation drains; the supervisor then starts
// the next instance.
func (u *Upgrader) restartInterim() error {
	u.log.Info("restart: handing the sockets to an interim generation until the supervisor starts the next instance", "supervisor", string(u.sv))
	return u.handover(u.spawner(spawn{detached: true, env: []string{envInterim + "=1"}}))
}

// watchInterim stops an interim generation once it has no reason to
// serve: the supervisor wants the service down, or no new instance came.
func (u *Upgrader) watchInterim() {
	timeout := u.opts.upgradeTimeout()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(interimPoll)
	defer tick.Stop()
	for {
		select {
		case <-u.exitC:
			return
		case <-deadline.C:
			u.log.Error("interim generation: no new instance took over through the control socket; stopping",
				"waited", timeout, "control", u.opts.Control, "hint", "the run script must pass the same control socket path")
			u.Stop()
			return
		case <-tick.C:
			st, err := u.sv.status()
			switch {
			case err != nil:
				u.log.Warn("interim generation: the supervisor's status is unreadable; stopping", "err", err)
			case !st.wantUp:
				u.log.Info("interim generation: the supervisor wants the service down; stopping")
			default:
				continue
			}
			u.Stop()
			return
		}
	}
}

// execInPlace re-executes the program in this process, for an upgrade that
// keeps the pid the supervisor tracks. The new image finds the interim
// generation on the control socket and takes the sockets back. It returns
// only on failure: the process then exits as usual, and the supervisor
// starts the next instance, which takes over the same way.
func (u *Upgrader) execInPlace() {
	path, err := u.opts.executable()
	if err == nil {
		os.Chdir(initialWD)
		env := make([]string, 0, len(os.Environ()))
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, envHandoff+"=") && !strings.HasPrefix(kv, envInterim+"=") {
				env = append(env, kv)
			}
		}
		u.log.Info("upgrading in place: re-executing; the new image takes over from the interim generation", "executable", path, "pid", os.Getpid())
		err = syscall.Exec(path, os.Args, env)
	}
	u.log.Error("upgrading in place failed; exiting instead, the supervisor starts the next instance", "err", err)
}
