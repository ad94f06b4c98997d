//go:build linux || darwin

package baton

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Supervisors of the daemontools family — daemontools' supervise, runit's
// runsv, s6-supervise — start a service's ./run in the service directory and
// keep their state in ./supervise/status there, a small binary file each
// writes in its own layout. baton reads it for one bit: whether the
// supervisor still wants the service up. SIGTERM means "restart" if it
// does (svc -t, sv restart, s6-svc -r) and "stop" if it does not (svc -d,
// sv stop, s6-svc -d).

type supervisorKind string

const (
	daemontools supervisorKind = "daemontools"
	runit       supervisorKind = "runit"
	s6          supervisorKind = "s6"
)

// svStatus is what baton needs of a supervisor's status file.
type svStatus struct {
	kind   supervisorKind
	pid    int // the process it tracks, 0 if none
	wantUp bool
}

// The layouts, as the tools write them:
//
//	daemontools  18 bytes: TAI64N stamp [0:12], pid u32 little-endian
//	             [12:16], paused [16], want 'u' or 'd' [17]
//	runit        20 bytes: the same, then got-TERM [18], state [19]
//	s6 < 2.12    35 bytes: stamp [0:12], ready stamp [12:24],
//	             pid u64 big-endian [24:32], wait status [32:34],
//	             flags [34]: 0x01 paused, 0x02 finishing, 0x04 want up,
//	             0x08 ready
//	s6 ≥ 2.12    43 bytes: a pgid u64 at [32:40] moves the wait status to
//	             [40:42] and the flags to [42] (from s6's source,
//	             s6_svstatus_pack.c; only the 35-byte layout was checked
//	             against the real tool here)
const (
	daemontoolsStatusLen = 18
	runitStatusLen       = 20
	s6StatusLen          = 35
	s6PgidStatusLen      = 43
	s6FlagWantUp         = 0x04
)

// parseSvStatus decodes a status file; its length tells the supervisor.
func parseSvStatus(b []byte) (svStatus, error) {
	switch len(b) {
	case daemontoolsStatusLen, runitStatusLen:
		kind := daemontools
		if len(b) == runitStatusLen {
			kind = runit
		}
		want := b[17]
		if want != 'u' && want != 'd' {
			return svStatus{}, fmt.Errorf("%s status: want byte %#x is neither 'u' nor 'd'", kind, want)
		}
		pid := binary.LittleEndian.Uint32(b[12:16])
		return svStatus{kind: kind, pid: int(pid), wantUp: want == 'u'}, nil
	case s6StatusLen, s6PgidStatusLen:
		pid := binary.BigEndian.Uint64(b[24:32])
		if pid > 1<<31 {
			return svStatus{}, fmt.Errorf("s6 status: bad pid %d", pid)
		}
		flags := b[len(b)-1]
		return svStatus{kind: s6, pid: int(pid), wantUp: flags&s6FlagWantUp != 0}, nil
	}
	return svStatus{}, fmt.Errorf("supervisor status of %d bytes: not daemontools (%d), runit (%d) or s6 (%d or %d)",
		len(b), daemontoolsStatusLen, runitStatusLen, s6StatusLen, s6PgidStatusLen)
}

// supervisorDir is the service directory of a supervised process: the
// directory it started in, if a supervisor keeps its status there.
type supervisorDir string

// findSupervisor returns the service directory this process runs in, or
// "" if it was not started by a supervisor of the daemontools family.
func findSupervisor() supervisorDir {
	if initialWD == "" {
		return ""
	}
	d := supervisorDir(initialWD)
	if _, err := d.status(); err != nil {
		return ""
	}
	return d
}

func (d supervisorDir) status() (svStatus, error) {
	st, _, err := d.statusStamp()
	return st, err
}

// svStamp is the TAI64N time at the start of every layout's status file:
// when the supervisor last changed the service's state. A new stamp with
// the service down means a process came and went, however short it ran.
type svStamp [12]byte

// statusStamp is status with the stamp of the file it read.
func (d supervisorDir) statusStamp() (svStatus, svStamp, error) {
	var stamp svStamp
	b, err := os.ReadFile(filepath.Join(string(d), "supervise", "status"))
	if err != nil {
		return svStatus{}, stamp, err
	}
	st, err := parseSvStatus(b)
	if err == nil {
		copy(stamp[:], b) // every layout is longer than a stamp
	}
	return st, stamp, err
}

// alive reports whether a supervisor runs on the service directory: the
// three of them read commands from the fifo supervise/control and keep it
// open, so opening it for writing without blocking fails with ENXIO only
// when none is there (what svok and s6-svok check). Nothing is written:
// the supervisor sees nothing. A stale status file cannot tell this.
func (d supervisorDir) alive() (bool, error) {
	fd, err := unix.Open(filepath.Join(string(d), "supervise", "control"), unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err == unix.ENXIO {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("%s/supervise/control: %w", d, err)
	}
	unix.Close(fd)
	return true, nil
}

// s6NotificationFd returns the descriptor on which s6-supervise waits for
// readiness (the service directory's notification-fd file), if it is open
// in this process. On Ready baton writes a newline to it and closes it,
// which is s6's readiness protocol; so "s6-svc -r -wR" returns when the new
// instance serves.
func (d supervisorDir) s6NotificationFd() (*os.File, error) {
	b, err := os.ReadFile(filepath.Join(string(d), "notification-fd"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 3 || n > 1<<20 {
		return nil, fmt.Errorf("%s/notification-fd: %q is not a descriptor number above 2", d, strings.TrimSpace(string(b)))
	}
	var st unix.Stat_t
	if err := unix.Fstat(n, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFIFO {
		// Not started by s6-supervise with it (a successor, or the
		// program re-executed in place after it said ready already):
		// only the process the supervisor started has the pipe.
		return nil, nil
	}
	unix.CloseOnExec(n)
	return os.NewFile(uintptr(n), "s6-notification-fd"), nil
}
