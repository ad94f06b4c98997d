//go:build !linux && !darwin

package loadgen

import "os"

// IsTerminal reports whether f is a terminal. On this platform it cannot
// tell and says no, which gets plain progress lines.
func IsTerminal(f *os.File) bool { return false }
