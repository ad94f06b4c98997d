//go:build linux

package baton_test

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/proctest"
)

func init() {
	proctest.Register("bench", benchMain)
	proctest.Register("idle", idleMain)
}

// benchMain is one generation of the upgrade benchmark: it holds
// BENCH_SOCKETS listeners (found again by name in every successor), and on
// SIGHUP upgrades and prints how long Upgrade took, measured here, from
// the call to the successor's ready.
func benchMain() {
	upg, err := baton.New(baton.Options{})
	check(err)
	n, _ := strconv.Atoi(os.Getenv("BENCH_SOCKETS"))
	for i := range n {
		_, err := extraListener(upg, i)
		check(err)
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	check(upg.Ready())
	fmt.Printf("bench-ready gen=%d pid=%d\n", upg.Generation(), os.Getpid())
	for s := range sigs {
		if s == syscall.SIGTERM {
			break
		}
		start := time.Now()
		err := upg.Upgrade()
		took := time.Since(start)
		if err != nil {
			fmt.Printf("bench-failed gen=%d err=%q\n", upg.Generation(), err)
			continue
		}
		fmt.Printf("bench-upgraded gen=%d ns=%d\n", upg.Generation(), took.Nanoseconds())
		break
	}
	upg.Stop()
}

// BenchmarkUpgrade measures the handoff: from Upgrade() to the successor's
// ready, with 1, 64 and 1024 sockets passed. Each iteration is one upgrade
// of a real process chain. ns/upgrade is measured inside the incumbent;
// ns/op adds the benchmark's own signalling and polling.
func BenchmarkUpgrade(b *testing.B) {
	for _, n := range []int{1, 64, 1024} {
		b.Run(fmt.Sprintf("sockets=%d", n), func(b *testing.B) {
			p := proctest.Start(b, "bench", []string{"BENCH_SOCKETS=" + strconv.Itoa(n)})
			line, err := p.WaitLine("bench-ready gen=1 ", 30*time.Second)
			if err != nil {
				b.Fatal(err)
			}
			pid, _ := strconv.Atoi(proctest.Field(line, "pid"))
			var total time.Duration
			b.ResetTimer()
			for i := 1; i <= b.N; i++ {
				syscall.Kill(pid, syscall.SIGHUP)
				line, err := p.WaitLine(fmt.Sprintf("bench-upgraded gen=%d ", i), 30*time.Second)
				if err != nil {
					b.Fatalf("upgrade %d: %v\n%s", i, err, p.Output())
				}
				ns, _ := strconv.Atoi(proctest.Field(line, "ns"))
				total += time.Duration(ns)
				next, err := p.WaitLine(fmt.Sprintf("bench-ready gen=%d ", i+1), 30*time.Second)
				if err != nil {
					b.Fatal(err)
				}
				pid, _ = strconv.Atoi(proctest.Field(next, "pid"))
				proctest.Track(b, pid, 15*time.Second)
			}
			b.StopTimer()
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/upgrade")
			syscall.Kill(pid, syscall.SIGTERM)
		})
	}
}

// idleMain is an idle process with one listener, through baton or not.
func idleMain() {
	var l net.Listener
	var err error
	if os.Getenv("IDLE_BATON") != "" {
		upg, err := baton.New(baton.Options{})
		check(err)
		l, err = upg.Listen("tcp", "127.0.0.1:0")
		check(err)
		check(upg.Ready())
	} else {
		l, err = net.Listen("tcp", "127.0.0.1:0")
		check(err)
	}
	defer l.Close()
	fmt.Printf("idle-ready pid=%d\n", os.Getpid())
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	<-sigs
}

// BenchmarkIdleRSS reports the resident memory of an idle process that
// serves one listener through an Upgrader, and of the same process without
// baton; the difference is what an idle upgrader costs.
func BenchmarkIdleRSS(b *testing.B) {
	rss := func(env ...string) float64 {
		p := proctest.Start(b, "idle", env)
		line, err := p.WaitLine("idle-ready ", 30*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		pid, _ := strconv.Atoi(proctest.Field(line, "pid"))
		time.Sleep(100 * time.Millisecond) // let the runtime settle
		kib, err := procfs.VmRSS(pid)
		if err != nil {
			b.Fatal(err)
		}
		return float64(kib) * 1024
	}
	var with, without float64
	for range b.N {
		with += rss("IDLE_BATON=1")
		without += rss()
	}
	b.ReportMetric(with/float64(b.N), "rss-bytes")
	b.ReportMetric(without/float64(b.N), "rss-bytes-without-baton")
	b.ReportMetric((with-without)/float64(b.N), "rss-bytes-cost")
}
