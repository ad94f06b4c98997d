package baton

import (
	"log/slog"
	"net"
	"time"
)

// DefaultUpgradeTimeout bounds how long a successor may take from start to
// Ready. A minute covers slow initialisation (cache warm-up, migrations
// checks) while still freeing a wedged upgrade within a deploy's patience.
const DefaultUpgradeTimeout = time.Minute

// Options configures an Upgrader. The zero value works.
type Options struct {
	// UpgradeTimeout bounds the time from starting the successor to its
	// Ready. A successor that is not ready by then is killed, and Upgrade
	// returns a *ChildError wrapping ErrTimeout. Defaults to
	// DefaultUpgradeTimeout.
	UpgradeTimeout time.Duration

	// PIDFile, if set, is written atomically with the pid of the serving
	// generation once it is ready, and removed on a final Stop. A relative
	// path is resolved against the working directory the process started
	// in. New fails if its directory does not take a new file: a
	// generation that could not name itself there must not serve (and a
	// successor refuses the handoff, so the incumbent serves on, still
	// named by the file). Defaults to none.
	PIDFile string

	// ListenConfig is used for sockets that are not inherited. Defaults to
	// the zero net.ListenConfig.
	ListenConfig net.ListenConfig

	// Executable is the program the successor is started from, with the
	// same arguments as this process (os.Args[1:]). A relative path is
	// resolved against the working directory the process started in.
	// Symlinks are not resolved, so a "current -> releases/N" layout runs
	// whatever release current points at when Upgrade is called.
	//
	// Defaults to os.Args[0], resolved the same way (or looked up in PATH
	// if it has no slash). If that file no longer exists — "go run"
	// deletes its binary, a deploy may remove the old one — the running
	// binary itself is used (/proc/self/exe on Linux). The choice is checked
	// before anything is started: a missing or non-executable file makes
	// Upgrade fail at once and nothing else happens.
	Executable string

	// Control is the path of a Unix socket through which a new instance of
	// the program, started by somebody else, takes the sockets over from
	// the instance that serves: the supervisor-restart mode, for
	// daemontools, runit and s6 (rs/seamless's job, without re-binding).
	// Defaults to none. Linux only.
	//
	// With it, New first connects to the socket: if an instance serves
	// there, this process receives its sockets exactly as a successor
	// started by Upgrade would, says Ready, and only then does the other
	// drain. Every ready generation then serves the socket for the next.
	//
	// Under a supervisor (HandleSignals finds ./supervise/status in the
	// directory the process started in), SIGTERM while the supervisor
	// wants the service up hands the sockets to an interim generation,
	// started as the supervisor's child, and exits; the supervisor starts
	// ./run again, and the new instance takes over from the interim one.
	// The interim generation serves until one does, however many new
	// instances fail first (each failure is logged): a broken deploy keeps
	// the old code serving instead of taking the service down. A plain
	// stop (the supervisor wants it down) drains and exits, and an interim
	// generation never outlives the service: it stops when the supervisor
	// wants the service down or is gone. s6's notification-fd is
	// honoured: the supervisor hears of readiness when the new instance
	// serves.
	//
	// The socket's directory is created with mode 0700 if missing and must
	// belong to this user and be closed to everybody else; both ends check
	// the other's uid (SO_PEERCRED).
	Control string

	// FDStore pushes every listening socket into systemd's file descriptor
	// store (FileDescriptorStoreMax= must be set on the unit), so that
	// across a plain "systemctl restart" or a crash the sockets stay open
	// and the kernel queues connections until the next start takes them
	// back. Ignored, with a warning, when systemd is not listening.
	FDStore bool

	// Probation is how long, after a successor is ready, this generation
	// keeps serving beside it before it drains. Defaults to 0: none, the
	// incumbent drains as soon as the successor is ready. At most
	// MaxProbation.
	//
	// During the window both generations accept from the shared sockets.
	// If the successor dies in it (exits, is killed, breaks the link),
	// this generation simply serves on: no connection is refused, only
	// those the successor had accepted die with it. Upgrade, which with a
	// probation returns only once the window has passed or the successor
	// failed, then returns a *ChildError matching ErrProbationFailed
	// that says when and how it died; under systemd STATUS= says so and
	// READY=1 is sent again. Nothing names the successor before its
	// probation passed: the PID file, the control socket, systemd's
	// MAINPID (so "systemctl reload" returns only then) and s6's
	// readiness all still name this generation, so a failure needs
	// nothing restored. The successor serves from its Ready on, names
	// itself once told the window passed (or once this generation is
	// gone), and refuses to upgrade meanwhile (ErrOnProbation).
	//
	// Stop during the window (SIGTERM) ends it early as passed: the
	// successor takes over, unless it is already dead.
	//
	// The cost: for the window two generations serve, so two versions of
	// the code answer, a request may reach either, and the service holds
	// the memory of both. The handover to the interim generation of a
	// supervised restart has no probation (it runs the code that serves
	// now); the new instance that takes over from it has.
	Probation time.Duration

	// MaxDraining bounds how many generations may drain at once. In a
	// chain of upgrades each generation drains while its successors
	// serve and upgrade in turn; when upgrades come faster than
	// long-lived connections end, draining generations pile up, each
	// with its memory and descriptors. With a bound, a generation that
	// starts draining and finds more than MaxDraining draining, itself
	// included, stops the oldest beyond the bound at once (HurrySignal:
	// see Upgrader.Hurry), and logs how many connections each held. The
	// service then runs at most MaxDraining draining generations, the
	// serving one, and during an upgrade the one starting: MaxDraining+2
	// processes, besides those told to stop that have not exited yet
	// (milliseconds, for an application that cancels its drain on
	// Hurry).
	//
	// The trade-off: the oldest generation's long connections (streams,
	// WebSockets, slow downloads) are cut before its drain deadline, so
	// that upgrades can come as fast as they like. Defaults to 0: no
	// bound. Linux only (generations are named by pid and start time
	// from /proc, so that a reused pid is never signalled); elsewhere it
	// is ignored, with a warning.
	MaxDraining int

	// Logger receives one line per upgrade step that an operator would
	// want to see. Defaults to nil: silent.
	Logger *slog.Logger
}

func (o *Options) upgradeTimeout() time.Duration {
	if o.UpgradeTimeout > 0 {
		return o.UpgradeTimeout
	}
	return DefaultUpgradeTimeout
}
