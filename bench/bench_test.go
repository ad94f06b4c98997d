//go:build linux

package bench

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var libs = []string{"baton", "tableflip"}

// BenchmarkHandoff measures one handoff of N listening sockets; see doc.go.
// The libraries alternate at each size so that both see the same machine.
func BenchmarkHandoff(b *testing.B) {
	for _, n := range []int{1, 64, 1024} {
		for _, lib := range libs {
			b.Run(fmt.Sprintf("lib=%s/sockets=%d", lib, n), func(b *testing.B) {
				benchHandoff(b, lib, n)
			})
		}
	}
}

func benchHandoff(b *testing.B, lib string, n int) {
	needFds(b, n)
	c := startChain(b, "handoff", envLib+"="+lib, envSockets+"="+strconv.Itoa(n))
	var total time.Duration
	for b.Loop() {
		total += c.upgrade()
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/upgrade")
	c.stop()
}

// needFds skips unless a helper may open what n sockets need. A process
// holds 2n: the application's listeners and the library's copies. But
// tableflip's start of a successor (syscall.StartProcess) first moves the
// n passed descriptors above the highest open one in the forked child, so
// it needs 3n; baton, which passes them over a socket, gets by with 2n.
// Go raises the soft limit to the hard one in every process, so the hard
// limit is what counts.
func needFds(b *testing.B, n int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if need := uint64(3*n + 100); lim.Max < need {
		// Said on stderr too: go test shows skips only with -v.
		msg := fmt.Sprintf("%s: %d sockets need about %d descriptors per process; the hard RLIMIT_NOFILE is %d (ulimit -Hn)", b.Name(), n, need, lim.Max)
		fmt.Fprintln(os.Stderr, "SKIP", msg)
		b.Skip(msg)
	}
}

// idleSettle is how long an idle helper sits after "ready" before its RSS
// is read, so that start-up work still in flight on other goroutines is
// done in both helpers alike.
const idleSettle = 50 * time.Millisecond

// BenchmarkIdle measures the resident memory an idle upgrader adds to a
// process that listens on one socket; see doc.go.
func BenchmarkIdle(b *testing.B) {
	for _, lib := range libs {
		b.Run("lib="+lib, func(b *testing.B) {
			var extra, base int64
			for b.Loop() {
				plain := idleRSS(b, "none")
				with := idleRSS(b, lib)
				extra += with - plain
				base += plain
			}
			b.ReportMetric(float64(extra)/float64(b.N), "rss-bytes")
			b.ReportMetric(float64(base)/float64(b.N), "base-rss-bytes")
			// The loop time is two process starts: noise, not a result.
			b.ReportMetric(0, "ns/op")
		})
	}
}

func idleRSS(b *testing.B, lib string) int64 {
	c := startChain(b, "idle", envLib+"="+lib)
	time.Sleep(idleSettle)
	rss, err := vmRSS(c.cur)
	if err != nil {
		b.Fatal(err)
	}
	c.stop()
	return rss
}
