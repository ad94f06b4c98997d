package supervisor

import (
	"errors"
	"fmt"
)

// Errors a caller may branch on, with errors.Is. A control response
// carries them as a Code, and Response.Err turns the code back into an
// error that matches the same sentinel.
var (
	// ErrReloadInProgress is returned by Reload while another reload runs
	// (SIGHUP is not refused so: see Master.Signal). Code
	// "reload_in_progress".
	ErrReloadInProgress = errors.New("supervisor: a reload is already in progress")
	// ErrStopped is returned once the master is stopping or stopped.
	// Code "stopped".
	ErrStopped = errors.New("supervisor: the master is stopping")
	// ErrNotServing is returned by ExecMaster while no generation serves:
	// the crashed worker is being restarted. Code "not_serving".
	ErrNotServing = errors.New("supervisor: no generation serves: the crashed worker is being restarted")
	// ErrNotSupported is returned by New on systems other than Linux.
	ErrNotSupported = errors.New("supervisor: not supported on this system")
	// ErrRefused is returned by Call when the master closed the
	// connection without an answer: it refuses peers of another uid so.
	ErrRefused = errors.New("supervisor: the master closed the connection without an answer (is it another user's?)")
	// ErrControlInUse is wrapped in New's error when something answers on
	// the control socket's path: another master, most likely. Its socket
	// is left alone.
	ErrControlInUse = errors.New("supervisor: something answers on the control socket")
)

// ConfigError is returned by New for a Config it cannot use, whatever the
// system: a ready check it does not know, one it cannot do with the
// sockets asked for, no program. ("baton run" exits 2 for it: a bad
// command line.)
type ConfigError struct {
	Field  string // the Config field: "Ready", "Program"
	Reason string
}

func (e *ConfigError) Error() string { return "supervisor: " + e.Reason }

// ListenError is ParseListen's error: Reason says what is wrong with the
// address, without the package's prefix ("baton run" prints it as a flag's
// error).
type ListenError struct {
	Reason string
	Err    error // the cause, if any
}

func (e *ListenError) Error() string { return "supervisor: " + e.Reason }

func (e *ListenError) Unwrap() error { return e.Err }

// GenerationError says why a generation never served: it could not start,
// exited, or was not ready in time. The serving generation, if any, serves
// on. Code "generation_failed".
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

// Code says in a control response why a command failed, so that a client
// branches on it rather than on the text of Response.Error.
type Code string

// The codes of a failed command. A master older than the codes sends none:
// Response.Err then matches no sentinel.
const (
	CodeReloadInProgress Code = "reload_in_progress" // ErrReloadInProgress
	CodeStopped          Code = "stopped"            // ErrStopped
	CodeNotServing       Code = "not_serving"        // ErrNotServing
	CodeGenerationFailed Code = "generation_failed"  // a *GenerationError; the Result says more
	CodeBadRequest       Code = "bad_request"        // the request was malformed or unknown
	CodeFailed           Code = "failed"             // anything else (the master's exec failed, ...)
)

// sentinels maps the codes that stand for a sentinel error to it.
var sentinels = map[Code]error{
	CodeReloadInProgress: ErrReloadInProgress,
	CodeStopped:          ErrStopped,
	CodeNotServing:       ErrNotServing,
}

// codeOf is the code of err for a control response.
func codeOf(err error) Code {
	for code, s := range sentinels {
		if errors.Is(err, s) {
			return code
		}
	}
	var gerr *GenerationError
	if errors.As(err, &gerr) {
		return CodeGenerationFailed
	}
	return CodeFailed
}

// CommandError is a failure the master reported in a control response
// (see Response.Err). errors.Is matches it against the sentinel its Code
// stands for: errors.Is(resp.Err(), ErrReloadInProgress).
type CommandError struct {
	Code    Code
	Message string // Response.Error, as the master wrote it
}

func (e *CommandError) Error() string { return e.Message }

func (e *CommandError) Is(target error) bool {
	s, ok := sentinels[e.Code]
	return ok && s == target
}
