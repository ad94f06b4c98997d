//go:build linux

package bench

import (
	"fmt"
	"os"
	"syscall"
	"testing"

	"github.com/batonhq/baton/internal/reaper"
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
		case "http":
			httpMain()
		default:
			fmt.Fprintf(os.Stderr, "bench: no helper %q\n", h)
			os.Exit(2)
		}
		os.Exit(0)
	}
	// Generations orphaned by their predecessor's exit are reparented to
	// us rather than to init, so we can reap them and see any that linger.
	if err := reaper.BecomeSubreaper(); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(2)
	}
	raiseNofile()
	os.Exit(m.Run())
}

// wantNofile is the RLIMIT_NOFILE the largest handoff needs: 10,000
// sockets, three descriptors each while tableflip starts a successor (see
// needFds), and a margin.
const wantNofile = 3*10_000 + 1000

// raiseNofile raises RLIMIT_NOFILE, soft and hard, to wantNofile, or the
// soft limit to the hard one if raising the hard limit is not allowed (it
// needs CAP_SYS_RESOURCE); needFds then skips the sizes that do not fit,
// and says so.
//
// The soft limit matters even though Go raises its own to the hard limit:
// Go starts children with the original one, often 1024. A tableflip
// successor inherits its descriptors at exec, so with 1024 sockets the
// dynamic loader of a cgo binary finds no free descriptor below 1024 and
// the successor dies (EMFILE loading libc.so.6). Setting the limit
// ourselves makes it the one children get; syscall.Setrlimit, not
// unix.Setrlimit, because only it tells StartProcess to stop restoring the
// original.
func raiseNofile() {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fmt.Fprintf(os.Stderr, "bench: RLIMIT_NOFILE: %v\n", err)
		return
	}
	if lim.Max < wantNofile {
		want := syscall.Rlimit{Cur: wantNofile, Max: wantNofile}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err == nil {
			return
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			fmt.Fprintf(os.Stderr, "bench: raising RLIMIT_NOFILE: %v\n", err)
		}
	}
}
