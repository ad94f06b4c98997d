//go:build linux

package bench

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// envHelper names the helper a re-executed test binary runs. It must stay
// set in the helper's environment: both libraries start successors with
// this process's environment, and a successor without it would run the
// whole test suite, which starts helpers, which upgrade… a fork bomb.
const envHelper = "BENCH_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(envHelper); h != "" {
		switch h {
		case "handoff":
			handoffMain()
		case "idle":
			idleMain()
		default:
			fmt.Fprintf(os.Stderr, "bench: no helper %q\n", h)
			os.Exit(2)
		}
		os.Exit(0)
	}
	// Generations orphaned by their predecessor's exit are reparented to
	// us rather than to init, so we can reap them and see any that linger.
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		fmt.Fprintf(os.Stderr, "bench: PR_SET_CHILD_SUBREAPER: %v\n", err)
		os.Exit(2)
	}
	// Go raises its own soft RLIMIT_NOFILE to the hard limit, but starts
	// children with the original one, often 1024. A tableflip successor
	// inherits its descriptors at exec, so with 1024 sockets the dynamic
	// loader of a cgo binary finds no free descriptor below 1024 and the
	// successor dies (EMFILE loading libc.so.6). Setting the limit
	// ourselves makes it the one children get; syscall.Setrlimit, not
	// unix.Setrlimit, because only it tells StartProcess to stop
	// restoring the original.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Fprintf(os.Stderr, "bench: raising RLIMIT_NOFILE: %v\n", err)
		}
	}
	os.Exit(m.Run())
}
