package supervisor

import (
	"os"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/reaper"
	"golang.org/x/sys/unix"
)

// The master reaps every child with one internal/reaper.Reaper: the
// workers it starts (whose exits go to the run loop) and the orphans
// reparented to it, as PID 1 or as a child subreaper. Nothing else waits,
// or it would steal a worker's exit status: which is why workers are
// started with syscall.StartProcess inside Spawn, and not with os/exec.

// newReaper is the master's reaper; orphans are counted, and logged.
func (m *Master) newReaper() *reaper.Reaper {
	return &reaper.Reaper{OnOrphan: func(pid int, ws syscall.WaitStatus) {
		m.log.Debug("reaped an orphan", "pid", pid, "status", describe(ws))
	}}
}

// How the descendants left behind by the workers (daemonised children,
// reparented here) are ended on the final stop: SIGTERM, then SIGKILL
// after orphanTermGrace (or the drain timeout, if shorter: they get no
// more than a worker would), then orphanKillWait for the kernel to end
// them. They are not this process's children by its own doing, and the
// only event of their exit is SIGCHLD to the reaper, which does not say
// whose: so the list is looked at again every orphanPoll.
const (
	orphanTermGrace = 5 * time.Second
	orphanKillWait  = 2 * time.Second
	orphanPoll      = 20 * time.Millisecond
)

// reapOrphans ends what the workers left behind: SIGTERM, then SIGKILL
// after a while.
func (m *Master) reapOrphans() {
	deadline := time.Now().Add(min(m.cfg.DrainTimeout, orphanTermGrace))
	sig := unix.SIGTERM
	for {
		kids := liveChildren()
		if len(kids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if sig == unix.SIGKILL {
				m.log.Warn("processes left after SIGKILL", "pids", kids)
				return
			}
			sig, deadline = unix.SIGKILL, time.Now().Add(orphanKillWait)
			m.log.Warn("killing what the workers left behind", "pids", kids)
			for _, p := range kids {
				unix.Kill(p, sig)
			}
		} else if sig == unix.SIGTERM {
			for _, p := range kids {
				unix.Kill(p, sig)
			}
			sig = 0
		}
		m.reaper.ReapNow()
		time.Sleep(orphanPoll)
	}
}

// liveChildren lists this process's children that run (zombies not
// counted: the reaper takes them).
func liveChildren() []int {
	kids, _ := procfs.Children(os.Getpid())
	var out []int
	for _, k := range kids {
		if !k.Zombie() {
			out = append(out, k.PID)
		}
	}
	return out
}
