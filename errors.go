package baton

import (
	"errors"
	"fmt"
)

var (
	// ErrNotSupported is returned by New on systems baton does not run on.
	ErrNotSupported = errors.New("baton: not supported on this system")

	// ErrNotReady is returned by Upgrade before Ready was called: a
	// generation that is not serving yet has nothing to hand over.
	ErrNotReady = errors.New("baton: upgrade before Ready")

	// ErrUpgradeInProgress is returned by Upgrade while another upgrade of
	// the same generation is under way. At most one runs at a time.
	ErrUpgradeInProgress = errors.New("baton: an upgrade is already in progress")

	// ErrStopped is returned by Upgrade after Stop, or after this generation
	// has already handed over to a successor.
	ErrStopped = errors.New("baton: upgrader stopped")

	// ErrExecNotRequested is returned by Exec when no upgrade in place was
	// asked for (see Upgrader.ExecRequested).
	ErrExecNotRequested = errors.New("baton: no upgrade in place was requested")

	// ErrTimeout is wrapped by the ChildError of a successor that was not
	// ready within Options.UpgradeTimeout and was killed.
	ErrTimeout = errors.New("baton: successor not ready in time")
)

// ChildError reports a successor that failed before it was ready. The
// incumbent has killed and reaped it and keeps serving.
type ChildError struct {
	// PID of the successor, 0 if it never started.
	PID int
	// Executable the successor was started from.
	Path string
	// Err says why: an *exec.ExitError (exit status or signal), an error
	// wrapping ErrTimeout, a *ProtocolError, or the successor's own abort
	// reason.
	Err error
}

func (e *ChildError) Error() string {
	if e.PID == 0 {
		return fmt.Sprintf("baton: successor %s did not start: %v", e.Path, e.Err)
	}
	return fmt.Sprintf("baton: successor %s (pid %d) failed before it was ready: %v", e.Path, e.PID, e.Err)
}

func (e *ChildError) Unwrap() error { return e.Err }
