//go:build !unix

package supervisor

// ExecWorker is not supported here: see trampoline_unix.go.
func ExecWorker(args []string) error { return ErrNotSupported }
