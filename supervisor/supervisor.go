package supervisor

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Defaults for Config fields left at their zero value.
const (
	DefaultUpgradeTimeout = time.Minute
	DefaultDrainTimeout   = 30 * time.Second
	DefaultName           = "default"
	DefaultStopSignal     = syscall.SIGTERM
	DefaultRestartLimit   = 5
	DefaultRestartWindow  = time.Minute
)

// The backoff before a crashed worker is restarted: restartDelay after the
// first crash within Config.RestartWindow, doubled for each further one,
// at most maxRestartDelay. Short, because connections wait in the accept
// queue meanwhile; growing, so that a worker that crashes at once does not
// make the master spin.
const (
	restartDelay    = 100 * time.Millisecond
	maxRestartDelay = 5 * time.Second
)

// restartBackoff is the wait before the restart that follows the nth
// failure within the window (n from 1).
func restartBackoff(n int) time.Duration {
	d := restartDelay
	for i := 1; i < n && d < maxRestartDelay; i++ {
		d *= 2
	}
	return min(d, maxRestartDelay)
}

// Readiness checks, for Config.Ready (besides an http:// URL).
const (
	ReadyNotify = "notify"
	ReadyTCP    = "tcp"
)

// WorkerCommand is the first argument that makes a program built with this
// package act as the trampoline between the master and a worker (see
// ExecWorker). The baton command reserves it.
const WorkerCommand = "_exec-worker"

// Config describes a master. Only Program is required.
type Config struct {
	// Program and Args are the worker: the program, looked up in PATH
	// when it has no slash at each start (so that a new binary installed
	// under the same name is what a reload runs), and its arguments.
	Program string
	Args    []string

	// Listen lists the sockets the master opens, once, and passes to
	// every generation, after those systemd passed to the master (socket
	// activation), which are always passed on.
	Listen []ListenSpec

	// Ready says how the master knows a generation serves: "notify"
	// (READY=1 on the private NOTIFY_SOCKET), "tcp" (the generation
	// accepted a connection on the first TCP listener) or an http:// URL
	// (a connection the generation accepted answers 200).
	// Defaults to "notify".
	Ready string

	// UpgradeTimeout bounds the wait for a new generation to be ready,
	// the first one included. Defaults to DefaultUpgradeTimeout.
	UpgradeTimeout time.Duration

	// DrainTimeout is how long a retiring generation may run after
	// StopSignal before it is killed. Defaults to DefaultDrainTimeout.
	DrainTimeout time.Duration

	// RestartLimit is how many times within RestartWindow the master
	// restarts a serving worker that exits by itself with a failure (a
	// status other than 0, or a signal it was not sent by the master):
	// it starts a new generation of the same command, which finds the
	// very sockets the master holds, so that connections wait in the
	// accept queue meanwhile instead of being refused. One crash more
	// within the window, and the master gives up: it stops and Run
	// returns the worker's *ExitError, as systemd's StartLimitBurst does.
	// Negative: never restart; the first crash stops the master. A
	// worker that exits 0 by itself always stops the master.
	// Defaults to DefaultRestartLimit.
	RestartLimit int

	// RestartWindow is the period over which RestartLimit counts crashes;
	// a worker that has not crashed for that long starts afresh, with the
	// shortest backoff. Defaults to DefaultRestartWindow.
	RestartWindow time.Duration

	// StopSignal tells a generation to drain and exit.
	// Defaults to DefaultStopSignal (SIGTERM).
	StopSignal syscall.Signal

	// Control is the path of the control socket. Defaults to
	// DefaultControlPath(Name).
	Control string

	// Name names the service, for the default control path.
	// Defaults to DefaultName.
	Name string

	// Self is the trampoline: a program that runs ExecWorker when its
	// first argument is WorkerCommand. Defaults to /proc/self/exe, this
	// very binary even if its file was replaced since.
	Self string

	// Executable is the master's own binary for ExecMaster, the in-place
	// upgrade of the master. Defaults to os.Args[0] as resolved when New
	// is called: against the working directory or in PATH, symlinks kept.
	Executable string

	// Stderr receives the workers' standard error, which the master
	// reads through a pipe to keep its last lines. Defaults to os.Stderr.
	Stderr io.Writer

	// Logger, if not nil, receives what the master does.
	Logger *slog.Logger
}

// stateEnv carries the master's state across ExecMaster.
const stateEnv = "BATON_MASTER_STATE"

// StderrLines is how many of a generation's last stderr lines are kept for
// a report.
const StderrLines = 20

var (
	// ErrReloadInProgress is returned by Reload while another reload runs
	// (SIGHUP is not refused so: see Master.Signal).
	ErrReloadInProgress = errors.New("supervisor: a reload is already in progress")
	// ErrStopped is returned once the master is stopping or stopped.
	ErrStopped = errors.New("supervisor: the master is stopping")
	// ErrNotSupported is returned by New on systems other than Linux.
	ErrNotSupported = errors.New("supervisor: not supported on this system")
)

// GenerationError says why a generation never served: it could not start,
// exited, or was not ready in time. The serving generation, if any, serves
// on.
type GenerationError struct {
	Gen    int
	PID    int      // 0 if it never started
	Reason string   // "exited with status 3", "not ready within 1m0s", ...
	Stderr []string // its last lines of standard error
	Err    error    // the cause, for a start failure
}

func (e *GenerationError) Error() string {
	s := fmt.Sprintf("supervisor: generation %d", e.Gen)
	if e.PID != 0 {
		s += fmt.Sprintf(" (pid %d)", e.PID)
	}
	return s + ": " + e.Reason
}

func (e *GenerationError) Unwrap() error { return e.Err }

// ExitError is returned by Run when the serving generation exited with a
// failure: by itself, or when it was stopped.
type ExitError struct {
	PID    int
	Status string // "exit status 3", "signal: killed"
	Code   int    // the status to exit with: the code, or 128+signal
	Stderr []string
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("supervisor: worker (pid %d) %s", e.PID, e.Status)
}

// Result reports a reload.
type Result struct {
	OK       bool          `json:"ok"`
	Gen      int           `json:"generation"`
	OldPID   int           `json:"old_pid,omitempty"`
	NewPID   int           `json:"new_pid,omitempty"`
	Duration time.Duration `json:"duration_ns"`
	Error    string        `json:"error,omitempty"`
	Stderr   []string      `json:"stderr,omitempty"`
}

// Status is what the master knows of itself and its generations.
type Status struct {
	PID         int                `json:"pid"`
	Started     time.Time          `json:"started"`
	State       string             `json:"state"` // starting, serving, reloading, restarting, stopping
	Control     string             `json:"control"`
	Listeners   []string           `json:"listeners"`
	Generations []GenerationStatus `json:"generations"`
	Reaped      int                `json:"orphans_reaped"`
	// Restarts counts the workers started after a crash; DrainKills the
	// generations killed at their drain deadline.
	Restarts   int `json:"restarts"`
	DrainKills int `json:"drain_kills"`
	// Goroutines is the master's number of goroutines: steady across
	// reloads, or something leaks.
	Goroutines int `json:"goroutines"`
}

// GenerationStatus is one generation in Status.
type GenerationStatus struct {
	Gen           int           `json:"generation"`
	PID           int           `json:"pid"`
	State         string        `json:"state"` // starting, serving, draining, stopping, failed
	Started       time.Time     `json:"started"`
	ReadyAfter    time.Duration `json:"ready_after_ns,omitempty"`
	DrainingSince time.Time     `json:"draining_since,omitzero"`
}

// DefaultControlPath is where the control socket of the service name is
// when Config.Control is empty: $XDG_RUNTIME_DIR/baton/NAME/control.sock,
// or /run/baton/NAME/control.sock for root, or
// $TMPDIR/baton-UID/NAME/control.sock.
func DefaultControlPath(name string) string {
	if name == "" {
		name = DefaultName
	}
	var dir string
	switch {
	case os.Getenv("XDG_RUNTIME_DIR") != "":
		dir = filepath.Join(os.Getenv("XDG_RUNTIME_DIR"), "baton")
	case os.Geteuid() == 0:
		dir = "/run/baton"
	default:
		dir = filepath.Join(os.TempDir(), "baton-"+strconv.Itoa(os.Geteuid()))
	}
	return filepath.Join(dir, name, "control.sock")
}

// exitCode is the status a shell would report for ws.
func exitCode(ws syscall.WaitStatus) int {
	switch {
	case ws.Exited():
		return ws.ExitStatus()
	case ws.Signaled():
		return 128 + int(ws.Signal())
	}
	return 1
}

func describe(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return "exit status " + strconv.Itoa(ws.ExitStatus())
	case ws.Signaled():
		s := "signal: " + ws.Signal().String()
		if ws.CoreDump() {
			s += " (core dumped)"
		}
		return s
	}
	return "ended"
}

// cleanEnv returns env without the variables meant for the master itself.
func cleanEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case stateEnv, "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID":
			continue
		}
		out = append(out, kv)
	}
	return out
}
