package baton

import (
	"errors"
	"os"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/sockdiag"
)

// boundSupported: Linux has /proc, where a generation is named for good.
const boundSupported = true

// HurrySignal asks a draining generation to stop at once (Upgrader.Hurry):
// SIGRTMIN+6, a real-time signal nothing else sends. (The kernel's
// SIGRTMIN is 32; the C library keeps 32 and 33 for itself and calls 34
// SIGRTMIN, so "kill -s RTMIN+6" from a shell sends 40.)
const HurrySignal = syscall.Signal(40)

// hurrySignals are what HandleSignals catches for Hurry.
var hurrySignals = []os.Signal{HurrySignal}

// thisGeneration names this process as generation gen.
func thisGeneration(gen int) (genID, bool) {
	st, err := procfs.ReadStat(os.Getpid())
	if err != nil {
		return genID{}, false
	}
	return genID{Gen: gen, PID: st.PID, Start: st.StartTime}, true
}

// stillRuns reports whether the process id names runs: same pid, same
// start time, not a zombie.
func stillRuns(id genID) bool {
	st, err := procfs.ReadStat(id.PID)
	return err == nil && st.StartTime == id.Start && !st.Zombie()
}

// errGone: the generation exited (or its pid is another process's now).
var errGone = errors.New("it is no longer running")

// stopGeneration sends HurrySignal to the generation id, through a pidfd taken
// before its start time is checked, so that the signal cannot reach
// another process that reused the pid in between.
func stopGeneration(id genID) error {
	fd, err := unix.PidfdOpen(id.PID, 0)
	if errors.Is(err, unix.ESRCH) {
		return errGone
	}
	if errors.Is(err, unix.ENOSYS) {
		// Before Linux 5.3: kill(2) after the check, a window of a
		// few microseconds in which the pid would have to be reused.
		if !stillRuns(id) {
			return errGone
		}
		return os.NewSyscallError("kill", unix.Kill(id.PID, HurrySignal))
	}
	if err != nil {
		return os.NewSyscallError("pidfd_open", err)
	}
	defer unix.Close(fd)
	if !stillRuns(id) {
		return errGone
	}
	if err := unix.PidfdSendSignal(fd, HurrySignal, nil, 0); err != nil {
		return os.NewSyscallError("pidfd_send_signal", err)
	}
	return nil
}

// establishedConns counts pid's connections, for the log line that says
// what stopping it at once cuts: its sockets that are not Unix domain
// sockets. For a draining generation, which has closed its listeners,
// those are its TCP connections (and UDP sockets, if it has any). -1 if
// they cannot be read.
//
// Not the established TCP sockets of sock_diag or /proc/net/tcp: the
// kernel lists those by walking every TCP socket of the host, TIME_WAIT
// included, which took 25 to 500 ms here (65,000 of them, under load)
// and would delay the stop by as much. Unix sockets are few.
func establishedConns(pid int) int {
	inodes, err := procfs.SocketInodes(pid)
	if err != nil {
		return -1
	}
	local, err := sockdiag.UnixInodes()
	if err != nil {
		return -1
	}
	n := 0
	for _, ino := range inodes {
		if !local[ino] {
			n++
		}
	}
	return n
}
