package supervisor

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/environ"
)

// Defaults for Config fields left at their zero value.
const (
	// DefaultUpgradeTimeout: a minute lets a server load its config,
	// warm caches and connect to its backends; one that takes longer
	// is more likely stuck than slow.
	DefaultUpgradeTimeout = time.Minute
	// DefaultDrainTimeout: 30s lets in-flight requests of a web service
	// finish (a load balancer's usual idle timeout is 60s, its request
	// timeout less), and is Kubernetes' default grace before SIGKILL.
	DefaultDrainTimeout = 30 * time.Second
	DefaultName         = "default"
	DefaultStopSignal   = syscall.SIGTERM
	// DefaultRestartLimit and DefaultRestartWindow: 5 failures within a
	// minute, systemd's StartLimitBurst and StartLimitIntervalSec.
	DefaultRestartLimit  = 5
	DefaultRestartWindow = time.Minute
)

// RestartNever is the Config.RestartLimit of a master that never restarts
// a crashed worker.
const RestartNever = -1

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
	// RestartNever (-1, or any negative number): never restart; the
	// first crash stops the master. A worker that exits 0 by itself
	// always stops the master. Defaults to DefaultRestartLimit: 0 is
	// "the default", as for every field, and "baton run --restart-limit"
	// takes the same values.
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

	// Trampoline is the program the master starts for each worker: one
	// that runs ExecWorker when its first argument is WorkerCommand, to
	// set LISTEN_PID to its own pid and exec the worker. Defaults to
	// /proc/self/exe, this very binary even if its file was replaced
	// since.
	Trampoline string

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
	State       State              `json:"state"` // starting, serving, reloading, restarting, stopping, stopped
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

// State is where the master or one of its generations stands, in Status.
// Its JSON is its text, as "baton status --json" prints it.
type State string

// The states of the master (Status.State) and of a generation
// (GenerationStatus.State).
const (
	StateStarting   State = "starting"   // the master: no generation served yet; a generation: not ready yet
	StateServing    State = "serving"    // both
	StateReloading  State = "reloading"  // the master: a new generation is being started beside the serving one
	StateRestarting State = "restarting" // the master: no generation serves, the crashed one is being replaced
	StateStopping   State = "stopping"   // both: told to drain and exit for good
	StateStopped    State = "stopped"    // the master, once Run has returned
	StateDraining   State = "draining"   // a generation replaced by a newer one, told to drain
	StateFailed     State = "failed"     // a generation that never served
)

func (s State) String() string { return string(s) }

// GenerationStatus is one generation in Status.
type GenerationStatus struct {
	Gen           int           `json:"generation"`
	PID           int           `json:"pid"`
	State         State         `json:"state"` // starting, serving, draining, stopping, failed
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

// masterOnly names the environment variables meant for the master
// itself, never for its workers: its own state across an exec, systemd's
// notification socket, socket activation and watchdog.
var masterOnly = []string{stateEnv, "NOTIFY_SOCKET", "LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES", "WATCHDOG_USEC", "WATCHDOG_PID"}

// cleanEnv returns env without the variables meant for the master itself.
func cleanEnv(env []string) []string { return environ.Without(env, masterOnly...) }
