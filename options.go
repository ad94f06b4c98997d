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
	// in. Defaults to none.
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
