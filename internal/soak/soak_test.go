//go:build linux

package soak

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/examples/httpserver/server"
	"github.com/batonhq/baton/httpdrain"
	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/proctest"
	"github.com/batonhq/baton/internal/reaper"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// The test binary is the server: server.Main is exactly what
	// "baton demo-server" runs, and as the test's own child (and child
	// subreaper of every orphaned generation) it can be proven to leave
	// nothing behind.
	proctest.Register("demo-server", func() {
		os.Exit(server.Main("demo-server", os.Args[1:], os.Stderr))
	})
	proctest.Main(m)
}

// envUpgrades sets the number of upgrades; "make soak" asks for 1000.
const envUpgrades = "BATON_SOAK_UPGRADES"

// defaultUpgrades keeps the soak in "make test": enough generations to
// run every path, few enough for the race detector.
const defaultUpgrades = 20

const (
	clients = 16
	// drain is each retiring generation's deadline; a generation still
	// running drain+exitMargin after it retired is an orphan.
	drain      = 10 * time.Second
	exitMargin = 10 * time.Second
)

// TestSoak upgrades the demo server BATON_SOAK_UPGRADES times in a row
// under load, with no failed request, and checks that the descriptors and
// memory of each new generation, taken when it is ready, stay flat, and
// that no process is left at the end.
func TestSoak(t *testing.T) {
	n := defaultUpgrades
	if v := os.Getenv(envUpgrades); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 2 {
			t.Fatalf("%s=%q: want a number of upgrades, at least 2", envUpgrades, v)
		}
	}
	s := startSoak(t)
	ctx, cancel := context.WithTimeout(context.Background(), testBudget(t))
	defer cancel()
	begin := time.Now()
	rep, err := loadgen.Run(ctx, loadgen.Config{
		URL:     "http://" + s.addr + "/",
		Clients: clients,
		// Pausing clients too: keep-alive POSTs with pauses up to twice
		// the demo server's IdleGrace, the traffic where a drain that
		// closes idle connections races the next request. The server
		// hands them to the next generation instead.
		Modes:       []loadgen.Mode{loadgen.Fresh, loadgen.KeepAlive, loadgen.Pausing},
		MaxPause:    2 * httpdrain.DefaultIdleGrace,
		Upgrades:    n,
		Upgrade:     s.upgrade,
		Warmup:      500 * time.Millisecond,
		Settle:      100 * time.Millisecond,
		SlowDelay:   200 * time.Millisecond,
		MaxRequests: 100_000_000,
	})
	if err != nil {
		t.Fatalf("loadgen.Run: %v", err)
	}
	took := time.Since(begin)
	var b strings.Builder
	rep.WriteText(&b)
	t.Logf("%d upgrades in %v\n%s", n, took.Round(time.Second), b.String())
	for _, p := range rep.Problems() {
		t.Error(p)
	}
	if rep.FailedRequests != 0 {
		t.Errorf("%d of %d requests failed; want 0", rep.FailedRequests, rep.Requests)
	}
	// Every keep-alive connection is handed from generation to
	// generation: none is closed under its client, so none reconnects.
	for _, m := range rep.Modes {
		if r := m.Reconnects(); r != 0 {
			t.Errorf("%s: %d connections opened by %d clients, %d reconnects; want each client to keep its one connection through every upgrade", m.Mode, m.Connections, m.Clients, r)
		}
	}
	s.stop()

	// A failed upgrade measures nothing: compare what there is.
	if len(s.samples) != n {
		t.Errorf("%d generations measured, want %d", len(s.samples), n)
	}
	if len(s.samples) < 2 {
		t.FailNow()
	}
	t.Logf("each new generation when the PID file names it:\n%s", s.series(len(s.samples)))
	s.checkFlat(t)
}

// testBudget is what is left of the test's time, less a minute to stop
// and report.
func testBudget(t *testing.T) time.Duration {
	if dl, ok := t.Deadline(); ok {
		return time.Until(dl) - time.Minute
	}
	return time.Hour
}

type soak struct {
	t       *testing.T
	proc    *proctest.Proc
	addr    string
	pidFile string
	pid     int // the serving generation
	logAt   int64

	samples []measured
	retired []retiredGen // generations not reaped yet
}

type measured struct {
	pid int
	Sample
}

type retiredGen struct {
	pid int
	at  time.Time
}

func startSoak(t *testing.T) *soak {
	dir := t.TempDir()
	s := &soak{t: t, addr: freeLoopbackAddr(t), pidFile: filepath.Join(dir, "server.pid")}
	// -idle-grace above the stalls of a -race test process on a shared
	// machine: a client frozen that long looks idle to the drain.
	s.proc = proctest.Start(t, "demo-server", nil, "-listen", s.addr, "-pid-file", s.pidFile, "-drain", drain.String(), "-idle-grace", "2s")
	deadline := time.Now().Add(time.Minute)
	for {
		if pid := s.readPID(); pid != 0 {
			s.pid = pid
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the demo server wrote no PID file in a minute:\n%s", s.proc.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if s.pid != s.proc.Pid() {
		t.Fatalf("the PID file names %d, but the demo server is %d", s.pid, s.proc.Pid())
	}
	return s
}

func freeLoopbackAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func (s *soak) readPID() int {
	b, err := os.ReadFile(s.pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// upgrade is loadgen's Config.Upgrade: SIGHUP to the serving generation,
// then wait until the PID file names its successor (or the log says the
// upgrade failed), measure the successor at once, and reap what retired.
func (s *soak) upgrade(ctx context.Context) error {
	old := s.pid
	if err := syscall.Kill(old, syscall.SIGHUP); err != nil {
		return fmt.Errorf("SIGHUP to pid %d: %w", old, err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if pid := s.readPID(); pid != 0 && pid != old {
			smp, err := Measure(pid)
			if err != nil {
				return fmt.Errorf("measuring generation pid %d: %w", pid, err)
			}
			s.samples = append(s.samples, measured{pid, smp})
			s.pid = pid
			s.retired = append(s.retired, retiredGen{old, time.Now()})
			s.reap(false)
			return nil
		}
		if line := s.newLogLine("upgrade failed"); line != "" {
			return errors.New(line)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d did not hand over within a minute", old)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// newLogLine returns the first line holding substr that the generations
// logged since the last call.
func (s *soak) newLogLine(substr string) string {
	f, err := os.Open(s.proc.Out)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(s.logAt, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	// Only whole lines: the rest is read again next time.
	end := strings.LastIndexByte(string(b), '\n') + 1
	s.logAt += int64(end)
	for _, l := range strings.Split(string(b[:end]), "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}

// reap collects the retired generations that have exited. The first is
// the test's own child, which proctest waits for; every later one was
// orphaned by its predecessor's exit and is ours as the child subreaper.
// A generation still running drain+exitMargin after it retired fails the
// test; with final set, reap waits that long for each.
func (s *soak) reap(final bool) {
	left := s.retired[:0]
	for _, r := range s.retired {
		limit := r.at.Add(drain + exitMargin)
		wait := time.Duration(0)
		if final {
			wait = max(time.Until(limit), 0)
		}
		var err error
		if r.pid == s.proc.Pid() {
			_, err = s.proc.Wait(wait)
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				s.t.Errorf("generation 1 (pid %d) exited with %v", r.pid, err)
				err = nil
			}
		} else {
			err = reapOrphan(r.pid, wait)
		}
		switch {
		case err == nil:
		case time.Now().After(limit):
			s.t.Errorf("retired generation pid %d still runs %v after it retired (state %q); killing it", r.pid, drain+exitMargin, proctest.State(r.pid))
			unix.Kill(r.pid, unix.SIGKILL)
			reapOrphan(r.pid, 5*time.Second)
		default:
			left = append(left, r)
		}
	}
	s.retired = left
}

// reapOrphan waits up to d for the generation pid to be gone: reaped by
// us, once its parent's exit made it ours, or by its parent. A zombie
// that is not ours yet is not gone: when its parent exits without reaping
// it (a generation that exits right after its successor did), it becomes
// ours, and only we can reap it. (proctest.Reap counts it as done.)
func reapOrphan(pid int, d time.Duration) error {
	if err := reaper.AwaitGone(pid, d); err != nil {
		return fmt.Errorf("%w (state %q)", err, proctest.State(pid))
	}
	return nil
}

// stop ends the service (SIGTERM to the serving generation), reaps every
// generation, and checks that this process has no child left: no orphaned
// generation, running or zombie.
func (s *soak) stop() {
	if err := syscall.Kill(s.pid, syscall.SIGTERM); err != nil {
		s.t.Errorf("SIGTERM to the serving generation %d: %v", s.pid, err)
	}
	s.retired = append(s.retired, retiredGen{s.pid, time.Now()})
	s.reap(true)
	if len(s.retired) > 0 {
		s.t.Errorf("generations not reaped: %v", s.retired)
	}
	if kids := proctest.Children(os.Getpid()); len(kids) > 0 {
		s.t.Errorf("processes left after the stop (pid: state): %v", kids)
	}
	if _, err := os.Stat(s.pidFile); !errors.Is(err, os.ErrNotExist) {
		s.t.Errorf("the PID file is still there after the final stop (%v)", err)
	}
}

// baseline is the upgrade, 1-based, the last one is compared with: the
// 50th, when the first generations' warm-up is long past, or halfway
// through a short run.
func baseline(n int) int { return min(50, n/2) }

// series is the table of every step-th upgrade, the baseline and the last.
func (s *soak) series(n int) string {
	step := 50
	if n < 200 {
		step = max(n/10, 1)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%8s %8s %5s %6s %6s %9s\n", "upgrade", "pid", "fds", "conns", "other", "rss KiB")
	for i, m := range s.samples {
		up := i + 1
		if up == 1 || up%step == 0 || up == baseline(n) || up == n {
			fmt.Fprintf(&b, "%8d %8d %5d %6d %6d %9d\n", up, m.pid, m.FDs, m.Conns, m.Other(), m.RSSKiB)
		}
	}
	return b.String()
}

// rssGrowth is how much more resident memory the last generation may have
// than the most the generations around the baseline had. A new process's
// RSS when it becomes ready depends on how many requests it has served
// by then and where the garbage collector stands, which varies by tens of
// percent from one generation to the next; a leak carried from generation
// to generation (a growing environment, inherited mappings or
// descriptors) grows with every one of them, and over a run of hundreds
// of upgrades goes far past half again.
const rssGrowth = 1.5

// checkFlat compares the last generation with those around the baseline.
func (s *soak) checkFlat(t *testing.T) {
	n := len(s.samples)
	base := baseline(n)
	window := s.samples[max(base-10, 1)-1 : min(base+10, n)]
	last := s.samples[n-1]
	ref := s.samples[base-1]
	if last.Other() > ref.Other() {
		t.Errorf("descriptors other than connections: %d after upgrade %d %q, %d after upgrade %d %q: a descriptor leaks from generation to generation",
			last.Other(), n, last.Others, ref.Other(), base, ref.Others)
	}
	maxRSS := slices.MaxFunc(window, func(a, b measured) int { return int(a.RSSKiB - b.RSSKiB) }).RSSKiB
	if float64(last.RSSKiB) > rssGrowth*float64(maxRSS) {
		t.Errorf("RSS %d KiB after upgrade %d; at most %d KiB around upgrade %d: more than %.1f times that", last.RSSKiB, n, maxRSS, base, rssGrowth)
	}
	// Connections belong to clients (clients per mode, two modes): at
	// most two per client — a fresh client's next connection can be
	// accepted before the server has closed its last one —, plus the
	// slow request and a probe or two, whatever the generation. A
	// generation that kept its connections would pass that soon.
	const maxConns = 2*(2*clients) + 4
	for i, m := range s.samples {
		if m.Conns > maxConns {
			t.Errorf("generation after upgrade %d (pid %d) held %d TCP connections; %d clients may account for %d at most", i+1, m.pid, m.Conns, 2*clients, maxConns)
		}
	}
}
