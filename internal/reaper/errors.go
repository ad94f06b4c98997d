package reaper

import "errors"

// ErrNotSupported is returned where the platform lacks what is asked:
// wait4 off Unix, a child subreaper off Linux.
var ErrNotSupported = errors.New("reaper: not supported on this platform")
