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

	// Probation is how long a new generation, once ready, serves beside
	// the one it replaces before that one is told to stop: both accept
	// from the shared sockets meanwhile. If the new generation dies
	// within the window, the old one simply serves on (it never stopped)
	// and the reload fails, naming how long into its probation the new
	// one died. The trade-off: two generations serve for that long, with
	// twice the memory, and a client may be answered by either. The
	// reload, its result and systemd's RELOADING=1 last until the window
	// is over; a reload asked for meanwhile is refused with
	// ErrReloadInProgress (a SIGHUP makes one more reload after it), as
	// during any reload. Only a reload has a probation: neither the first
	// generation nor the restart of a crashed one has anything beside it
	// to fall back on. Defaults to 0: none, the old generation is told
	// to stop as soon as the new one is ready.
	Probation time.Duration

	// MaxDraining bounds how many generations may be draining at once:
	// when one more starts to drain, the oldest ones beyond the bound
	// are killed at once (SIGKILL), and a log line names each, its pid,
	// how long it drained and how many established connections it held.
	// So at most MaxDraining+1 workers run between reloads (the draining
	// ones and the serving one), and MaxDraining+2 during a reload (one
	// more starting, or on probation). Defaults to 0: unbounded, since
	// killing a generation drops the connections it holds, which only
	// the operator can weigh against memory; DrainTimeout bounds each
	// drain anyway.
	MaxDraining int

	// Metrics, if not empty, is the address the master serves its
	// Prometheus metrics on (GET /metrics): HOST:PORT, or :PORT for
	// 127.0.0.1:PORT — loopback unless a host is named, since the
	// figures (pids, memory, failures) are nobody else's business by
	// default. A host that is not a loopback address is allowed, and
	// logged. Defaults to "": none.
	Metrics string

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
	// Name is the service's name (Config.Name).
	Name string `json:"name"`
	// Restarts counts the workers started after a crash; DrainKills the
	// generations killed at their drain deadline.
	Restarts   int `json:"restarts"`
	DrainKills int `json:"drain_kills"`
	// LimitKills counts the draining generations killed because more
	// than Config.MaxDraining were draining.
	LimitKills int `json:"limit_kills"`
	// Upgrades counts the reloads that ended, by outcome.
	Upgrades UpgradeStats `json:"upgrades"`
	// Drains are the drains that ended: from the stop signal to the
	// generation's exit, whatever ended it.
	Drains DrainStats `json:"drains"`
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
	StateProbation  State = "probation"  // a generation: ready, serving beside the one it replaces (Config.Probation)
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
	// Age is how long it has run.
	Age time.Duration `json:"age_ns"`
	// Connections is how many established TCP connections the process
	// holds on the master's TCP listeners' ports (its children's are not
	// counted); -1 when the kernel would not say.
	Connections int `json:"connections"`
	// RSS is its resident memory (VmRSS), in bytes; 0 when unknown.
	RSS int64 `json:"rss_bytes"`
}

// UpgradeStats counts reloads: a generation started while another served.
// One that failed (before it was ready, or during its probation) left the
// old one serving.
type UpgradeStats struct {
	OK          int       `json:"ok"`
	Failed      int       `json:"failed"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// DrainBuckets are the upper bounds of DrainStats.Buckets: from a drain
// that had nothing to wait for to one cut at DefaultDrainTimeout or
// later.
var DrainBuckets = []time.Duration{
	100 * time.Millisecond, 500 * time.Millisecond, time.Second, 2500 * time.Millisecond,
	5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute, 5 * time.Minute,
}

// DrainStats sums up the drains that ended. Count and Sum give a rate and
// a mean; Buckets[i] counts the drains that took at most DrainBuckets[i]
// (not cumulative); those longer than the last bound count only in
// Count.
type DrainStats struct {
	Count   int           `json:"count"`
	Sum     time.Duration `json:"sum_ns"`
	Last    time.Duration `json:"last_ns"`
	Buckets []int         `json:"buckets"`
}

// add records one drain of d.
func (s *DrainStats) add(d time.Duration) {
	if len(s.Buckets) != len(DrainBuckets) {
		s.Buckets = make([]int, len(DrainBuckets))
	}
	s.Count++
	s.Sum += d
	s.Last = d
	for i, le := range DrainBuckets {
		if d <= le {
			s.Buckets[i]++
			break
		}
	}
}

// clone is s with Buckets of its own: a Status must not share the run
// loop's slice.
func (s DrainStats) clone() DrainStats {
	s.Buckets = append([]int(nil), s.Buckets...)
	return s
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
