//go:build linux || darwin

package baton

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/batonhq/baton/internal/svstatus"
)

// Supervisors of the daemontools family — daemontools' supervise, runit's
// runsv, s6-supervise — start a service's ./run in the service directory and
// keep their state in ./supervise/status there, a small binary file each
// writes in its own layout (internal/svstatus decodes them). baton reads it
// for one bit: whether the supervisor still wants the service up. SIGTERM
// means "restart" if it does (svc -t, sv restart, s6-svc -r) and "stop" if
// it does not (svc -d, sv stop, s6-svc -d).

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

// status reads the supervisor's status file. Its Stamp is the TAI64N time
// the supervisor last changed the service's state: a new stamp with the
// service down means a process came and went, however short it ran.
func (d supervisorDir) status() (svstatus.Status, error) {
	b, err := os.ReadFile(filepath.Join(string(d), "supervise", "status"))
	if err != nil {
		return svstatus.Status{}, err
	}
	return svstatus.Parse(b)
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
