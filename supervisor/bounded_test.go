//go:build linux

package supervisor_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/httpdrain"
	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/systemd"
)

// holderWorker is a worker with long-lived connections it will not close
// early, as a server of WebSockets or streams that cannot be handed over:
// it serves HTTP on the first socket the master passes (drained with
// httpdrain on SIGTERM), and on the second it accepts connections, greets
// each with "held pid=PID\n" and holds it, reading, until its client
// closes it. Told to stop, it stops accepting, drains HTTP and goes on
// holding: it exits 0 once its clients have closed every held connection,
// or is killed (by the master's drain deadline or -max-draining).
func holderWorker() {
	pid := os.Getpid()
	if os.Getenv("LISTEN_PID") != strconv.Itoa(pid) || os.Getenv("LISTEN_FDS") != "2" {
		fmt.Fprintf(os.Stderr, "holder: LISTEN_PID=%q LISTEN_FDS=%q: want 2 sockets for pid %d\n", os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), pid)
		os.Exit(4)
	}
	listen := func(fd uintptr) net.Listener {
		f := os.NewFile(fd, "listen")
		ln, err := net.FileListener(f)
		f.Close()
		if err != nil {
			fmt.Fprintln(os.Stderr, "holder:", err)
			os.Exit(5)
		}
		return ln
	}
	web, hold := listen(3), listen(4)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	srv := httpdrain.New(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pid=%d\n", pid)
	})}, httpdrain.Options{IdleGrace: 2 * time.Second}) // see rig.zero
	go srv.Serve(web)
	var held sync.WaitGroup
	go func() {
		for {
			c, err := hold.Accept()
			if err != nil {
				return
			}
			held.Add(1)
			go func() {
				defer held.Done()
				defer c.Close()
				fmt.Fprintf(c, "held pid=%d\n", pid)
				io.Copy(io.Discard, c) // until the client closes it
			}()
		}
	}()
	if err := systemd.NewNotifierFrom(os.Getenv("NOTIFY_SOCKET")).Ready(); err != nil {
		fmt.Fprintln(os.Stderr, "holder: READY=1:", err)
		os.Exit(6)
	}
	<-sigs
	hold.Close() // our copy only
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	srv.Drain(ctx)
	cancel()
	held.Wait()
	os.Exit(0)
}

var limitKillRE = regexp.MustCompile(`msg="too many generations draining: killing the oldest" .*generation=(\d+) pid=(\d+) drained=(\S+) connections=(-?\d+)`)

// TestBoundedGenerations reloads every 200ms while each generation holds
// connections it will not close (holderWorker) and -max-draining is 3:
// the master never runs more than 3+2 workers (3 draining, the serving
// one, one starting or on probation: the bound Config.MaxDraining
// documents), it kills the oldest draining one with a log line naming
// its connections, and a separate load of plain HTTP requests, which
// never retries, loses none. About 15s; BATON_BOUNDED_LONG=1 makes it
// the 60s run of the issue, by hand.
func TestBoundedGenerations(t *testing.T) {
	const (
		maxDraining = 3
		perGen      = 50 // held connections opened after each reload: ~200 held at once
	)
	upgrades := 20 // ~15s: 200ms apart, and a reload of a race-built worker takes ~0.4s here
	if os.Getenv("BATON_BOUNDED_LONG") == "1" {
		upgrades = 90 // ~60s
	}
	holdAddr := freeAddr(t)
	r := newRig(t, rigConfig{
		flags:  []string{"--listen", "tcp://" + holdAddr, "--max-draining", strconv.Itoa(maxDraining), "--drain-timeout", "2m"},
		worker: func(dir, addr string) []string { return []string{testBin, "holder"} },
	})
	st, err := r.m.status()
	if err != nil {
		t.Fatal(err)
	}
	masterPID := st.PID

	// The workers and the service's memory, from /proc: a poll, since the
	// processes are not ours to be told of; every 20ms, far more often
	// than a generation comes or goes.
	type sample struct {
		workers int
		rss     int64
	}
	var (
		monMu   sync.Mutex
		samples []sample
	)
	monCtx, stopMon := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() {
		defer close(monDone)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			kids, _ := procfs.Children(masterPID)
			s := sample{}
			rss, _ := procfs.VmRSS(masterPID)
			s.rss = rss << 10
			for _, k := range kids {
				if k.Zombie() {
					continue // killed, not yet reaped: no longer runs
				}
				s.workers++
				if kib, err := procfs.VmRSS(k.PID); err == nil {
					s.rss += kib << 10
				}
			}
			monMu.Lock()
			samples = append(samples, s)
			monMu.Unlock()
			select {
			case <-monCtx.Done():
				return
			case <-tick.C:
			}
		}
	}()

	// Held connections: each read until the worker's end closes it.
	var (
		heldMu  sync.Mutex
		heldAll []net.Conn
		opened  atomic.Int64
		ended   atomic.Int64 // closed by the worker's side (killed)
		readers sync.WaitGroup
	)
	hold := func(ctx context.Context) error {
		for range perGen {
			c, err := net.DialTimeout("tcp", holdAddr, 5*time.Second)
			if err != nil {
				return fmt.Errorf("held connection: %w", err)
			}
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
				c.Close()
				return fmt.Errorf("held connection: no greeting: %w", err)
			}
			c.SetReadDeadline(time.Time{})
			opened.Add(1)
			heldMu.Lock()
			heldAll = append(heldAll, c)
			heldMu.Unlock()
			readers.Add(1)
			go func() {
				defer readers.Done()
				io.Copy(io.Discard, c) // until the worker's side closes
				ended.Add(1)
			}()
		}
		return nil
	}
	if err := hold(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := loadgen.Run(ctx, loadgen.Config{
		URL:      "http://" + r.addr + "/",
		Clients:  8,
		Modes:    []loadgen.Mode{loadgen.Fresh, loadgen.KeepAlive},
		Upgrades: upgrades,
		Upgrade: func(ctx context.Context) error {
			if _, err := r.reloadOK(ctx); err != nil {
				return err
			}
			return hold(ctx)
		},
		Warmup:         300 * time.Millisecond,
		Settle:         200 * time.Millisecond,
		SlowDelay:      -1,
		RequestTimeout: 10 * time.Second,
		MaxRequests:    2_000_000,
	})
	if err != nil {
		t.Fatalf("loadgen.Run: %v", err)
	}
	stopMon()
	<-monDone
	var b strings.Builder
	rep.WriteText(&b)
	t.Logf("\n%s", b.String())
	r.zero(rep)

	maxWorkers, maxRSS, sumRSS := 0, int64(0), int64(0)
	for _, s := range samples {
		maxWorkers = max(maxWorkers, s.workers)
		maxRSS = max(maxRSS, s.rss)
		sumRSS += s.rss
	}
	if maxWorkers > maxDraining+2 {
		t.Errorf("up to %d workers ran at once; want at most %d (max-draining %d + the serving one + one starting)", maxWorkers, maxDraining+2, maxDraining)
	}
	kills := limitKillRE.FindAllStringSubmatch(r.m.output(), -1)
	var connsKilled []string
	for _, k := range kills {
		connsKilled = append(connsKilled, k[4])
	}
	st, err = r.m.status()
	if err != nil {
		t.Fatal(err)
	}
	if len(kills) == 0 || st.LimitKills != len(kills) {
		t.Errorf("%d kills beyond -max-draining logged, %d in the status; want as many, and some", len(kills), st.LimitKills)
	}
	// Each killed generation held what its clients opened after the
	// reload that made it serve, perGen, give or take those the next
	// generation accepted before the old one closed its copy.
	withConns := 0
	for _, c := range connsKilled {
		if n, _ := strconv.Atoi(c); n > 0 {
			withConns++
		}
	}
	if withConns == 0 {
		t.Errorf("no kill named a connection; want the held ones counted")
	}
	t.Logf("%d reloads, max-draining %d: %d samples, at most %d workers at once; %d generations killed, holding %s connections; %d held connections opened, %d ended by a kill",
		upgrades, maxDraining, len(samples), maxWorkers, len(kills), strings.Join(connsKilled, ","), opened.Load(), ended.Load())
	t.Logf("RSS of the service (master and workers): max %.1f MiB, mean %.1f MiB", float64(maxRSS)/(1<<20), float64(sumRSS)/float64(max(len(samples), 1))/(1<<20))

	// The end: the clients close what they hold, the workers exit.
	heldMu.Lock()
	for _, c := range heldAll {
		c.Close()
	}
	heldMu.Unlock()
	readers.Wait()
	r.stop(0)
}
