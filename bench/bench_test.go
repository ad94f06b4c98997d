//go:build linux

package bench

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var libs = []string{"baton", "tableflip"}

// handoffSizes are the socket counts BenchmarkHandoff hands over: each ten
// times the last, to show how the handoff grows.
var handoffSizes = []int{1, 10, 100, 1000, 10_000}

// BenchmarkHandoff measures one handoff of N listening sockets; see doc.go.
// The libraries alternate at each size so that both see the same machine.
// If the largest size does not fit in the descriptor limit, the largest
// multiple of 1,000 that does is measured too, so that the growth still
// shows.
func BenchmarkHandoff(b *testing.B) {
	sizes := handoffSizes
	if fit := fittingSockets(); fit < sizes[len(sizes)-1] && fit > sizes[len(sizes)-2] {
		sizes = append(sizes[:len(sizes)-1:len(sizes)-1], fit, sizes[len(sizes)-1])
	}
	for _, n := range sizes {
		for _, lib := range libs {
			b.Run(fmt.Sprintf("lib=%s/sockets=%d", lib, n), func(b *testing.B) {
				benchHandoff(b, lib, n)
			})
		}
	}
}

func benchHandoff(b *testing.B, lib string, n int) {
	needFds(b, lib, n)
	if probing(b) {
		return
	}
	c := startChain(b, "handoff", envLib+"="+lib, envSockets+"="+strconv.Itoa(n))
	var total time.Duration
	// Every generation says, when ready, how many of its descriptors
	// refer to its n sockets: what the library costs in descriptors.
	fds, gens := field(c.ready, "fds"), 1
	for b.Loop() {
		total += c.upgrade()
		fds += field(c.ready, "fds")
		gens++
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/upgrade")
	b.ReportMetric(float64(fds)/float64(gens*n), "fds/socket")
	c.stop()
}

// descriptorsNeeded is about what a helper of lib needs to hand over n
// sockets, at its peak, with a margin of 100 for everything else. baton
// keeps no copy of a socket and sends the listeners' own descriptors: n.
// tableflip keeps a copy of each (2n), and its start of a successor
// (syscall.StartProcess) first moves the n passed descriptors above the
// highest open one in the forked child: 3n.
func descriptorsNeeded(lib string, n int) uint64 {
	if lib == "tableflip" {
		return 3*uint64(n) + 100
	}
	return uint64(n) + 100
}

// perSocket says, for a SKIP line, what a library costs per socket.
var perSocket = map[string]string{
	"baton":     "baton keeps no copy: 1 per socket, also while it sends them",
	"tableflip": "tableflip keeps 2 per socket, and 3 while it starts a successor",
}

// needFds skips unless a helper of lib may open what n sockets need (see
// descriptorsNeeded). Go raises the soft limit to the hard one in every
// process, so the hard limit is what counts; TestMain raised it if it
// could (raiseNofile).
func needFds(b *testing.B, lib string, n int) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		b.Fatal(err)
	}
	if need := descriptorsNeeded(lib, n); lim.Max < need {
		// Said on stderr too: go test shows skips only with -v. The
		// results page lists these lines.
		msg := fmt.Sprintf("%s: %d sockets need about %d descriptors per process (%s); the hard RLIMIT_NOFILE is %d (ulimit -Hn), and this process may not raise it to %d: that needs CAP_SYS_RESOURCE", b.Name(), n, need, perSocket[lib], lim.Max, wantNofile)
		fmt.Fprintln(os.Stderr, "SKIP", msg)
		b.Skip(msg)
	}
}

// fittingSockets is the largest multiple of 1,000 sockets that both
// libraries can hand over within the hard RLIMIT_NOFILE (see
// descriptorsNeeded: tableflip's 3 per socket decides).
func fittingSockets() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Max < 3100 {
		return 0
	}
	return int(min((lim.Max-100)/3, 1<<30)) / 1000 * 1000
}

// probing reports whether this call of a benchmark is the probe that the
// testing package makes with b.N = 1 before it runs the -benchtime Nx that
// was asked for. Its result is thrown away, so a benchmark whose setup
// costs seconds returns at once instead.
func probing(b *testing.B) bool {
	if b.N != 1 {
		return false
	}
	f := flag.Lookup("test.benchtime")
	if f == nil {
		return false
	}
	n, err := strconv.Atoi(strings.TrimSuffix(f.Value.String(), "x"))
	return err == nil && strings.HasSuffix(f.Value.String(), "x") && n > 1
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
