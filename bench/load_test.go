//go:build linux

package bench

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton/httpdrain"
	"github.com/batonhq/baton/internal/loadgen"
	"golang.org/x/sys/unix"
)

// loadLibs are the handoffs compared under load: the two libraries, and the
// re-bind with SO_REUSEPORT (reuseport_test.go).
var loadLibs = []string{"baton", "tableflip", "reuseport"}

// The load of BenchmarkUpgradeUnderLoad, the same for every server.
const (
	// loadClients is loadgen's Clients: per mode, both modes at once.
	loadClients = 16
	// loadWarmup is the load before the first upgrade: the steady-state
	// latency sample, some tens of thousands of requests.
	loadWarmup = 2 * time.Second
	// loadSettle is the pause from the end of one upgrade to the start of
	// the next. With loadgen's slow lead (50ms) and a handoff of a few
	// milliseconds, an upgrade starts about every 0.4s.
	loadSettle = 350 * time.Millisecond
	// loadRequestsPerUpgrade bounds the load requests of a run, with
	// room for ten times what 2 cores serve (about 10,000 a second).
	loadRequestsPerUpgrade = 50_000
	// loadSlow is the delay of the slow request in flight across each
	// upgrade: longer than a handoff, so that it spans it, and short
	// enough to keep a run of 100 upgrades under a minute.
	loadSlow = 250 * time.Millisecond
)

// BenchmarkUpgradeUnderLoad upgrades an HTTP server b.N times under load
// from clients that never retry, and counts the requests that failed; see
// doc.go. b.N is the number of upgrades: -benchtime 100x makes 100.
func BenchmarkUpgradeUnderLoad(b *testing.B) {
	for _, d := range drains {
		for _, lib := range loadLibs {
			b.Run(fmt.Sprintf("drain=%s/lib=%s", d, lib), func(b *testing.B) {
				benchLoad(b, lib, d, busyLoad)
			})
		}
	}
}

// pausingServers are the servers BenchmarkPausingClients compares, as
// drain=…/lib=…: baton with httpdrain handing idle connections over the
// generation link; baton with httpdrain at its default IdleGrace and no
// handoff; tableflip with plain Shutdown, as its README serves.
var pausingServers = [][2]string{{"handoff", "baton"}, {"idle", "baton"}, {"shutdown", "tableflip"}}

// BenchmarkPausingClients upgrades an HTTP server b.N times while
// keep-alive clients POST with pauses of up to twice httpdrain's default
// IdleGrace between requests, never retrying: the traffic of a connection
// pool behind a proxy, where a server that closes an idle connection races
// the client's next request. It counts the failed requests and the
// connections the clients had to open again.
func BenchmarkPausingClients(b *testing.B) {
	for _, s := range pausingServers {
		b.Run(fmt.Sprintf("drain=%s/lib=%s", s[0], s[1]), func(b *testing.B) {
			benchLoad(b, s[1], s[0], pausingLoad)
		})
	}
}

// loadShape is the traffic of a load benchmark.
type loadShape struct {
	modes    []loadgen.Mode // nil: loadgen's default, fresh and keep-alive
	settle   time.Duration
	maxPause time.Duration
	slow     time.Duration
}

var (
	// busyLoad: clients that send back to back, in both modes.
	busyLoad = loadShape{settle: loadSettle, slow: loadSlow}
	// pausingLoad: pausing clients, and upgrades far enough apart that
	// each client pauses a few times between two of them.
	pausingLoad = loadShape{modes: []loadgen.Mode{loadgen.Pausing}, settle: pausingSettle, maxPause: pausingMaxPause, slow: loadSlow}
)

const (
	// pausingMaxPause is twice httpdrain.DefaultIdleGrace: some pauses
	// outlast a draining server's patience with idle connections.
	pausingMaxPause = 2 * httpdrain.DefaultIdleGrace
	// pausingSettle lets every client make a few requests between two
	// upgrades.
	pausingSettle = 1500 * time.Millisecond
)

func benchLoad(b *testing.B, lib, drain string, shape loadShape) {
	if probing(b) {
		return
	}
	c := startChain(b, "http", envLib+"="+lib, envDrain+"="+drain)
	addr := fieldString(c.first, "addr")
	if addr == "" {
		b.Fatalf("helper said %q, want an addr=", c.first)
	}

	// Old generations drain while the load goes on; each is reaped by a
	// goroutine of its own, and all of them before the chain is stopped.
	type retired struct {
		done chan struct{} // closed once reaped
		err  error
		// lived is how long it ran on after its Upgrade returned: its
		// drain, which ends when its last connection is gone.
		lived time.Duration
	}
	var (
		olds    []*retired
		handoff time.Duration // sum of the helpers' ns= (as in BenchmarkHandoff)
	)
	upgrade := func(ctx context.Context) error {
		// tableflip refuses to upgrade until its predecessor is gone, so
		// every server waits for that, alike. It has usually happened
		// during the settle pause.
		if n := len(olds); n > 0 {
			select {
			case <-olds[n-1].done:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		old := c.cur
		if err := unix.Kill(old, unix.SIGHUP); err != nil {
			return fmt.Errorf("kill -HUP %d: %w", old, err)
		}
		var took time.Duration
		next := 0
		for took == 0 || next == 0 {
			l, err := c.next(ctx)
			if err != nil {
				return err
			}
			switch {
			case word(l) == "upgraded" && field(l, "pid") == old:
				ns, _ := strconv.ParseInt(fieldString(l, "ns"), 10, 64)
				took = max(time.Duration(ns), 1)
			case word(l) == "upgrade-failed" && field(l, "pid") == old:
				return fmt.Errorf("pid %d: %s", old, strings.TrimPrefix(l, "upgrade-failed "))
			case word(l) == "ready" && field(l, "pid") != old:
				next = field(l, "pid")
			default:
				return fmt.Errorf("upgrading pid %d: unexpected line %q", old, l)
			}
		}
		handoff += took
		c.cur = next
		r := &retired{done: make(chan struct{})}
		olds = append(olds, r)
		go func() {
			defer close(r.done)
			start := time.Now()
			r.err = reap(old, drainTimeout+10*time.Second)
			r.lived = time.Since(start)
		}()
		return nil
	}

	// Every upgrade is bounded by the helpers' own timeouts (a minute);
	// this bounds the run as a whole.
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(b.N)*(time.Second+2*drainTimeout)+time.Minute)
	defer cancel()
	b.ResetTimer()
	rep, err := loadgen.Run(ctx, loadgen.Config{
		URL:       "http://" + addr + "/",
		Clients:   loadClients,
		Modes:     shape.modes,
		Upgrades:  b.N,
		Upgrade:   upgrade,
		Warmup:    loadWarmup,
		Settle:    shape.settle,
		SlowDelay: shape.slow,
		MaxPause:  shape.maxPause,
		// loadgen's default (a million) is within reach of 100 upgrades.
		MaxRequests: int64(b.N+10) * loadRequestsPerUpgrade,
	})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	var lived time.Duration
	for _, r := range olds {
		<-r.done
		if r.err != nil {
			b.Errorf("old generation: %v", r.err)
		}
		lived += r.lived
	}
	if len(olds) > 0 {
		b.ReportMetric(float64(lived.Nanoseconds())/float64(len(olds)), "drain-ns")
	}
	c.stop()

	if rep.Stopped != "" {
		b.Errorf("load stopped early: %s", rep.Stopped)
	}
	// Failed requests are the measurement, not a failure of the benchmark;
	// one example of each kind says what they were.
	for _, p := range rep.Problems() {
		b.Log(p)
	}
	for _, m := range rep.Modes {
		for _, class := range slices.Sorted(maps.Keys(m.Failures.Examples)) {
			b.Logf("%s %s, such as: %s", m.Mode, class, m.Failures.Examples[class][0])
		}
	}
	reportLoad(b, rep, handoff)
}

// reportLoad turns a loadgen Report into benchmark metrics, which
// cmd/results reads. Counts are totals over the run; "upgrades" says how
// many upgrades succeeded.
func reportLoad(b *testing.B, rep *loadgen.Report, handoff time.Duration) {
	for _, m := range rep.Modes {
		f := m.Failures
		b.ReportMetric(float64(m.Requests), string(m.Mode)+"-requests")
		b.ReportMetric(float64(f.Total()), string(m.Mode)+"-failed")
		b.ReportMetric(float64(m.Connections), string(m.Mode)+"-connections")
		b.ReportMetric(float64(m.Reconnects()), string(m.Mode)+"-reconnects")
		for _, kv := range []struct {
			class string
			n     int64
		}{
			{"refused", f.Refused}, {"reset", f.Reset}, {"eof", f.EOF},
			{"timeout", f.Timeout}, {"non200", f.Non200}, {"other", f.Other},
		} {
			if kv.n > 0 {
				b.ReportMetric(float64(kv.n), string(m.Mode)+"-"+kv.class)
			}
		}
	}
	b.ReportMetric(float64(rep.Upgrades.OK), "upgrades")
	b.ReportMetric(float64(rep.Upgrades.Failed), "failed-upgrades")
	if rep.Slow != nil {
		b.ReportMetric(float64(rep.Slow.Failed), "failed-slow")
	}
	if rep.Upgrades.OK > 0 {
		b.ReportMetric(float64(handoff.Nanoseconds())/float64(rep.Upgrades.OK), "ns/upgrade")
	}
	b.ReportMetric(float64(rep.Steady.P99.Nanoseconds()), "steady-p99-ns")
	b.ReportMetric(float64(rep.NearUpgrade.P99.Nanoseconds()), "near-p99-ns")
	b.ReportMetric(float64(rep.Steady.P50.Nanoseconds()), "steady-p50-ns")
	b.ReportMetric(float64(rep.NearUpgrade.P50.Nanoseconds()), "near-p50-ns")
	// The loop time is load, warmup and pauses: not a result.
	b.ReportMetric(0, "ns/op")
}
