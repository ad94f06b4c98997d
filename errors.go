package baton

import (
	"errors"
	"fmt"
	"time"
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

	// ErrOnProbation is returned by Upgrade in a successor that serves on
	// probation (Options.Probation of its predecessor): until it passes,
	// the predecessor may still be the one that serves on. HandleSignals
	// carries a SIGHUP out once the probation has passed.
	ErrOnProbation = errors.New("baton: upgrade during this generation's probation")

	// ErrProbationFailed is matched (errors.Is) by the error of an upgrade
	// whose successor died, or broke the link, within its probation: this
	// generation serves on. The error is a *ChildError whose Err is a
	// *ProbationError.
	ErrProbationFailed = errors.New("baton: successor failed on probation")
)

// ProbationError says how a successor failed on probation: how long
// after it was acknowledged ready it was found dead (or its link broken),
// and why, when that is known (an *exec.ExitError with its exit status or
// signal, for a successor that is our child).
type ProbationError struct {
	After     time.Duration // from the ack to the end noticed
	Probation time.Duration // the window it was on
	Err       error
}

func (e *ProbationError) Error() string {
	return fmt.Sprintf("died %v after ready, within its probation of %v: %v", e.After.Round(time.Millisecond), e.Probation, e.Err)
}

// Is makes every ProbationError match ErrProbationFailed.
func (e *ProbationError) Is(target error) bool { return target == ErrProbationFailed }

func (e *ProbationError) Unwrap() error { return e.Err }

// ChildError reports a successor that failed before it was ready, or on
// probation (its Err is then a *ProbationError). The incumbent has killed
// and reaped it and keeps serving.
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
	var pe *ProbationError
	if errors.As(e.Err, &pe) {
		return fmt.Sprintf("baton: successor %s (pid %d) failed on probation: %v", e.Path, e.PID, e.Err)
	}
	return fmt.Sprintf("baton: successor %s (pid %d) failed before it was ready: %v", e.Path, e.PID, e.Err)
}

func (e *ChildError) Unwrap() error { return e.Err }
