//go:build unix

package supervisor

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// ExecWorker is the trampoline between the master and a worker: args are
// the program's path and its argv. It sets LISTEN_PID to this process's
// pid when LISTEN_FDS is set — which the master cannot do, not knowing the
// pid before it forks — and execs the program, which keeps the pid. It
// returns only on failure.
//
// A program built with this package calls it when its first argument is
// WorkerCommand, before anything else opens a descriptor: the sockets sit
// at 3 and up, and are not close-on-exec.
func ExecWorker(args []string) error {
	if len(args) < 2 {
		return errors.New("supervisor: ExecWorker: want the program's path and its argv")
	}
	env := os.Environ()
	if os.Getenv("LISTEN_FDS") != "" {
		env = append(env, "LISTEN_PID="+strconv.Itoa(os.Getpid()))
	}
	err := syscall.Exec(args[0], args[1:], env)
	return fmt.Errorf("supervisor: cannot run %s: %w", args[0], err)
}
