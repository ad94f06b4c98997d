package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/grpcdrain"
	"github.com/batonhq/baton/internal/proctest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The server runs as this test binary re-executed: every generation,
// successors included, is a real process with real sockets. "grpc-plain"
// is the same server draining as grpc-go users do today (GracefulStop,
// Stop at the deadline), for the comparison.
func init() {
	proctest.Register("grpc", func() { os.Exit(Main("grpc", os.Args[1:], os.Stderr)) })
	proctest.Register("grpc-plain", func() {
		cfg, status := parseFlags("grpc", os.Args[1:], os.Stderr)
		if status >= 0 {
			os.Exit(status)
		}
		cfg.plainDrain = true
		os.Exit(run(cfg, os.Stderr))
	})
}

func TestMain(m *testing.M) { proctest.Main(m) }

// upgradeStep bounds each step of an upgrade as the test sees it, and each
// call: generous for a race-instrumented binary on two busy cores; a
// healthy step takes well under a second.
const upgradeStep = 30 * time.Second

// The load. Streams last streamLen*streamInterval = 2 s, twice the drain
// deadline: a stream that an upgrade finds with more than drainDeadline
// to go is ended at the deadline and resumed, one with less completes on
// the retiring generation; both happen at every upgrade.
const (
	unaryClients   = 16
	freshClients   = 4                    // of unaryClients, those that connect anew for every call
	unaryPace      = 5 * time.Millisecond // between one client's calls: ~3,000 calls/s in all, which two cores keep up with under -race
	streamClients  = 8
	streamLen      = 100
	streamInterval = 20 * time.Millisecond
	drainDeadline  = time.Second
	// loadLimit bounds every load loop in time, whatever happens to
	// the test's own control flow.
	loadLimit = 10 * time.Minute
)

// server is one run of the example: its generations in order.
type server struct {
	p       *proctest.Proc
	pidFile string
	addr    string
	*proctest.Generations
}

func startServer(tb testing.TB, helper string) *server {
	tb.Helper()
	return startServerDrain(tb, helper, drainDeadline)
}

func startServerDrain(tb testing.TB, helper string, drain time.Duration) *server {
	tb.Helper()
	pidFile := filepath.Join(tb.TempDir(), "grpc.pid")
	p := proctest.StartServer(tb, helper, nil, "-listen", "127.0.0.1:0", "-pid-file", pidFile, "-drain", drain.String())
	s := &server{p: p, pidFile: pidFile}
	s.addr = proctest.Field(p.WaitLog(tb, "msg=serving", upgradeStep), "addr")
	s.Generations = proctest.FollowGenerations(tb, p, pidFile, upgradeStep)
	return s
}

// dial opens a client connection. No retries: a failed call shows.
// grpc-go still retries, on a new connection, a call the server never
// processed — one refused by GOAWAY, sent as it crossed the wire:
// transparent retry is part of the protocol (the server tells the client
// the call never ran), not an application retry, and no client can turn
// it off.
func dial(tb testing.TB, addr string) *grpc.ClientConn {
	tb.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry())
	if err != nil {
		tb.Fatal(err)
	}
	return cc
}

// echo calls Echo and returns the pid that answered.
func echo(ctx context.Context, cc *grpc.ClientConn, msg string) (int, error) {
	out := new(wrapperspb.StringValue)
	if err := cc.Invoke(ctx, EchoMethod, wrapperspb.String(msg), out); err != nil {
		return 0, err
	}
	pidText, rest, ok := strings.Cut(strings.TrimPrefix(out.Value, "pid="), " ")
	pid, _ := strconv.Atoi(pidText)
	if !ok || rest != msg || pid <= 0 || !strings.HasPrefix(out.Value, "pid=") {
		return 0, fmt.Errorf("Echo(%q) = %q; want \"pid=PID %s\"", msg, out.Value, msg)
	}
	return pid, nil
}

// unaryClient calls Echo in a loop on its own connection, or, if fresh,
// each time on a new one: that is the client a connection accepted by a
// retiring generation in its last instant meets.
type unaryClient struct {
	id      int
	cc      *grpc.ClientConn
	addr    string
	fresh   bool
	calls   int
	failed  int
	errs    []error
	lastPID atomic.Int64
}

func (c *unaryClient) run(stop <-chan struct{}) {
	limit := time.After(loadLimit)
	for k := 0; ; k++ {
		select {
		case <-stop:
			return
		case <-limit:
			return
		case <-time.After(unaryPace):
		}
		ctx, cancel := context.WithTimeout(context.Background(), upgradeStep)
		cc := c.cc
		if c.fresh {
			var err error
			if cc, err = grpc.NewClient(c.addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry()); err != nil {
				panic(err) // a constant target: cannot fail
			}
		}
		pid, err := echo(ctx, cc, fmt.Sprintf("c%d-%d", c.id, k))
		if c.fresh {
			cc.Close()
		}
		cancel()
		c.calls++
		if err != nil {
			c.failed++
			if len(c.errs) < 3 {
				c.errs = append(c.errs, err)
			}
			continue
		}
		c.lastPID.Store(int64(pid))
	}
}

// streamClient reads Count streams of streamLen messages one after
// another. A stream ended by a draining server (grpcdrain.Resumption) is
// opened again from the resume point; every message must come exactly
// once, in order. With resume false (the plain drain's clients, which
// cannot tell a drain from a crash) a stream that breaks is given up and
// its remaining messages counted lost.
type streamClient struct {
	id     int
	cc     *grpc.ClientConn
	resume bool

	streams, completed, resumed, broken, lost, crossed int
	bad                                                []error // gaps, duplicates, wrong resume points, short streams
	lastPID                                            atomic.Int64
	brokenErrs                                         []error
}

func (c *streamClient) run(stop <-chan struct{}) {
	limit := time.After(loadLimit)
	for {
		select {
		case <-stop:
			return
		case <-limit:
			return
		default:
		}
		c.streams++
		c.one()
	}
}

// one reads one stream to its end, resuming it across drains.
func (c *streamClient) one() {
	next := 0
	var pids []int
	for calls := 0; next < streamLen; calls++ {
		if calls > 2*streamLen {
			c.bad = append(c.bad, fmt.Errorf("stream %d: %d calls without reaching its end", c.streams, calls))
			return
		}
		trailer, end := c.call(next, &next, &pids)
		if end == errOutOfOrder {
			return
		}
		if end == io.EOF {
			if next != streamLen {
				c.bad = append(c.bad, fmt.Errorf("stream %d ended at %d of %d", c.streams, next, streamLen))
				return
			}
			break
		}
		if r, ok := grpcdrain.Resumption(end, trailer); ok && c.resume {
			if r != strconv.Itoa(next) {
				c.bad = append(c.bad, fmt.Errorf("stream %d: resume at %q after message %d", c.streams, r, next-1))
				return
			}
			c.resumed++
			continue
		}
		c.broken++
		c.lost += streamLen - next
		if len(c.brokenErrs) < 3 {
			c.brokenErrs = append(c.brokenErrs, end)
		}
		return
	}
	c.completed++
	if len(pids) > 1 {
		c.crossed++
	}
}

// call opens Count from *next and reads it to its end, advancing *next
// over every message, which must be *next exactly.
func (c *streamClient) call(from int, next *int, pids *[]int) (trailer metadata.MD, end error) {
	ctx, cancel := context.WithTimeout(context.Background(), upgradeStep+streamLen*streamInterval)
	defer cancel()
	cs, err := c.cc.NewStream(ctx, CountDesc, CountMethod)
	if err != nil {
		return nil, err
	}
	if err := cs.SendMsg(CountRequest(streamLen, from, streamInterval)); err != nil {
		err := drainErr(cs)
		return cs.Trailer(), err
	}
	if err := cs.CloseSend(); err != nil {
		return nil, err
	}
	for {
		m := new(structpb.Struct)
		if err := cs.RecvMsg(m); err != nil {
			return cs.Trailer(), err
		}
		tick, err := ParseTick(m)
		if err != nil || tick.Seq != *next {
			c.bad = append(c.bad, fmt.Errorf("stream %d: message %v (%v); want seq %d", c.streams, tick, err, *next))
			return nil, errOutOfOrder
		}
		*next++
		c.lastPID.Store(int64(tick.PID))
		if n := len(*pids); n == 0 || (*pids)[n-1] != tick.PID {
			*pids = append(*pids, tick.PID)
		}
	}
}

// errOutOfOrder ends a stream whose message was not the one expected.
var errOutOfOrder = errors.New("message out of order")

// drainErr is the error that ended cs, once SendMsg failed (SendMsg
// returns io.EOF and leaves the status to RecvMsg).
func drainErr(cs grpc.ClientStream) error {
	for {
		if err := cs.RecvMsg(new(structpb.Struct)); err != nil {
			return err
		}
	}
}

// figures are one run's counts.
type figures struct {
	upgrades                                  int
	calls, failed                             int
	streams, completed, resumed, broken, lost int
	crossed                                   int
	bad                                       int
	drains                                    []time.Duration
	wrapped, cut                              int
	elapsed                                   time.Duration
}

func (f figures) String() string {
	var total, max time.Duration
	for _, d := range f.drains {
		total += d
		max = maxDur(max, d)
	}
	mean := time.Duration(0)
	if len(f.drains) > 0 {
		mean = total / time.Duration(len(f.drains))
	}
	return fmt.Sprintf("%d upgrades in %v: unary calls %d, failed %d; streams %d: completed %d (%d across generations), resumed %d times, broken %d, messages lost %d, out of order %d; drains %d, mean %v, max %v; calls told to wrap up %d, cut %d",
		f.upgrades, f.elapsed.Round(time.Millisecond), f.calls, f.failed, f.streams, f.completed, f.crossed, f.resumed, f.broken, f.lost, f.bad,
		len(f.drains), mean.Round(time.Millisecond), max.Round(time.Millisecond), f.wrapped, f.cut)
}

func maxDur(a, b time.Duration) time.Duration {
	if a > b {
		return a
	}
	return b
}

// runUpgrades serves the load through upgrades of the server run as
// helper, checking the health service of each retiring generation, and
// returns the counts.
func runUpgrades(tb testing.TB, helper string, upgrades int) figures {
	srv := startServer(tb, helper)
	start := time.Now()

	unary := make([]*unaryClient, unaryClients)
	streams := make([]*streamClient, streamClients)
	var conns []*grpc.ClientConn
	defer func() {
		for _, cc := range conns {
			cc.Close()
		}
	}()
	for i := range unary {
		unary[i] = &unaryClient{id: i, cc: dial(tb, srv.addr), addr: srv.addr, fresh: i < freshClients}
		conns = append(conns, unary[i].cc)
	}
	for i := range streams {
		streams[i] = &streamClient{id: i, cc: dial(tb, srv.addr), resume: helper == "grpc"}
		conns = append(conns, streams[i].cc)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range unary {
		wg.Go(func() { c.run(stop) })
	}
	for _, c := range streams {
		wg.Go(func() { c.run(stop) })
	}
	stopClients := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopClients()

	// Every unary client must have been answered by the serving
	// generation before the next upgrade: so each went through every
	// GOAWAY. Polled: the clients' progress is theirs, not an event of
	// ours.
	waitAnswered := func(pid int) {
		deadline := time.Now().Add(upgradeStep)
		for _, c := range unary {
			for c.lastPID.Load() != int64(pid) {
				if time.Now().After(deadline) {
					stopClients()
					tb.Fatalf("unary client %d: no answer from generation %d within %v (errors %v)", c.id, pid, upgradeStep, c.errs)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	waitStreams := func(pid int) {
		deadline := time.Now().Add(upgradeStep)
		for _, c := range streams {
			for c.lastPID.Load() != int64(pid) {
				if time.Now().After(deadline) {
					stopClients()
					tb.Fatalf("stream client %d: no message from generation %d within %v", c.id, pid, upgradeStep)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	waitAnswered(srv.Current())
	waitStreams(srv.Current())
	for u := 1; u <= upgrades; u++ {
		old := srv.Current()
		watch, leave := watchHealth(tb, srv.addr, old)
		pid := srv.Upgrade()
		// The retiring generation says so to a watcher it still has.
		if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
			tb.Errorf("upgrade %d: health of the retiring generation %d: %v, %v; want NOT_SERVING", u, old, r, err)
		}
		leave()
		waitAnswered(pid)
		// Every stream must have crossed to the new generation too
		// (finished on the old one, or ended at its deadline, and
		// re-opened): so each upgrade finds streams at work, at every
		// point of their course.
		waitStreams(pid)
	}
	stopClients()
	srv.Stop()

	f := figures{upgrades: upgrades, elapsed: time.Since(start)}
	for _, c := range unary {
		f.calls += c.calls
		f.failed += c.failed
		for _, err := range c.errs {
			tb.Logf("unary client %d: %v", c.id, err)
		}
	}
	for _, c := range streams {
		f.streams += c.streams
		f.completed += c.completed
		f.resumed += c.resumed
		f.broken += c.broken
		f.lost += c.lost
		f.crossed += c.crossed
		f.bad += len(c.bad)
		for _, err := range c.bad {
			tb.Errorf("stream client %d: %v", c.id, err)
		}
		if helper == "grpc" {
			for _, err := range c.brokenErrs {
				tb.Logf("stream client %d: broken: %v", c.id, err)
			}
		}
	}
	for _, l := range strings.Split(srv.p.Output(), "\n") {
		if !strings.Contains(l, "msg=drained ") {
			continue
		}
		d, err := time.ParseDuration(proctest.Field(l, "took"))
		if err != nil {
			tb.Errorf("drain log line %q: %v", l, err)
		}
		f.drains = append(f.drains, d)
		w, _ := strconv.Atoi(proctest.Field(l, "wrapped"))
		c, _ := strconv.Atoi(proctest.Field(l, "cut"))
		f.wrapped, f.cut = f.wrapped+w, f.cut+c
	}
	// The final stop drains too; only the upgrades' drains count.
	if len(f.drains) == upgrades+1 {
		f.drains = slices.Delete(f.drains, len(f.drains)-1, len(f.drains))
	}
	return f
}

// watchHealth opens a health watch of the echo service on a connection of
// its own to generation pid (checked with an Echo on that connection) and
// reads its SERVING; leave ends it.
func watchHealth(tb testing.TB, addr string, pid int) (healthpb.Health_WatchClient, func()) {
	tb.Helper()
	cc := dial(tb, addr)
	ctx, cancel := context.WithTimeout(context.Background(), upgradeStep)
	leave := func() { cancel(); cc.Close() }
	if got, err := echo(ctx, cc, "watch"); err != nil || got != pid {
		leave()
		tb.Fatalf("a new connection is served by %d (%v); want the serving generation %d", got, err, pid)
	}
	w, err := healthpb.NewHealthClient(cc).Watch(ctx, &healthpb.HealthCheckRequest{Service: ServiceName})
	if err != nil {
		leave()
		tb.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		leave()
		tb.Fatalf("health of the serving generation %d: %v, %v; want SERVING", pid, r, err)
	}
	return w, leave
}

// 16 clients call Echo in a loop and 8 read long Count streams through 20
// upgrades (BATON_GRPC_UPGRADES): no unary call fails; every stream
// completes, or is ended at the drain deadline with grpcdrain's status and
// resumed on the successor without losing or repeating a message; each
// retiring generation's health reports NOT_SERVING; no call is cut.
func TestUpgradesKeepCalls(t *testing.T) {
	f := runUpgrades(t, "grpc", proctest.EnvInt(t, "BATON_GRPC_UPGRADES", 20))
	t.Logf("grpcdrain: %v", f)
	if f.failed != 0 {
		t.Errorf("%d of %d unary calls failed; want 0", f.failed, f.calls)
	}
	if f.broken != 0 || f.lost != 0 || f.cut != 0 {
		t.Errorf("%d streams broken, %d messages lost, %d calls cut; want 0", f.broken, f.lost, f.cut)
	}
	// Streams twice as long as the deadline, at every upgrade: some
	// must have been ended and resumed, some finished while draining.
	if f.resumed == 0 || f.crossed == 0 {
		t.Errorf("%d streams resumed, %d completed across generations; want both at work", f.resumed, f.crossed)
	}
}

// BenchmarkDrain runs the load through b.N upgrades with grpcdrain and with
// the plain drain (GracefulStop, Stop at the deadline), and reports for
// each the failed unary calls, the broken streams and messages lost, and
// the mean drain time. Run it with a count of upgrades:
//
//	go test -run '^$' -bench Drain -benchtime 20x ./server
//
// The sub-benchmarks are named drain=grpcdrain and drain=plain, the form
// bench/cmd/results reads for docs/RESULTS.md.
func BenchmarkDrain(b *testing.B) {
	for _, d := range []struct{ name, helper string }{{"grpcdrain", "grpc"}, {"plain", "grpc-plain"}} {
		helper := d.helper
		b.Run("drain="+d.name, func(b *testing.B) {
			f := runUpgrades(b, helper, b.N)
			b.Logf("%s: %v", helper, f)
			var total time.Duration
			for _, d := range f.drains {
				total += d
			}
			if len(f.drains) > 0 {
				b.ReportMetric(float64(total.Milliseconds())/float64(len(f.drains)), "drain-ms")
			}
			b.ReportMetric(float64(f.failed), "failed-calls")
			b.ReportMetric(float64(f.broken), "broken-streams")
			b.ReportMetric(float64(f.lost), "lost-msgs")
			b.ReportMetric(float64(f.resumed), "resumed")
			b.ReportMetric(float64(f.calls), "calls")
			b.ReportMetric(float64(f.streams), "streams")
			b.ReportMetric(float64(f.upgrades), "upgrades")
		})
	}
}

// SIGTERM drains and stops: a stream longer than the drain ends at the
// deadline with grpcdrain's status (its client would resume it wherever
// the service comes back), every message before it delivered; the process
// exits and the final stop removes the PID file.
func TestStopEndsStreams(t *testing.T) {
	srv := startServer(t, "grpc")
	cc := dial(t, srv.addr)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), upgradeStep)
	defer cancel()
	cs, err := cc.NewStream(ctx, CountDesc, CountMethod)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(CountRequest(MaxCount, 7, streamInterval)); err != nil {
		t.Fatal(err)
	}
	cs.CloseSend()
	if err := cs.RecvMsg(new(structpb.Struct)); err != nil {
		t.Fatalf("first message: %v", err)
	}
	if err := syscall.Kill(srv.Current(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	next := 8
	for {
		m := new(structpb.Struct)
		if err = cs.RecvMsg(m); err != nil {
			break
		}
		if tick, err := ParseTick(m); err != nil || tick.Seq != next {
			t.Fatalf("message %v (%v); want seq %d", m, err, next)
		}
		next++
	}
	took := time.Since(stopped)
	if r, ok := grpcdrain.Resumption(err, cs.Trailer()); !ok || r != strconv.Itoa(next) {
		t.Errorf("stream ended with %v, trailer %v; want grpcdrain's status resuming at %d", err, cs.Trailer(), next)
	}
	if took < drainDeadline-100*time.Millisecond {
		t.Errorf("stream ended %v after SIGTERM; want the drain deadline, %v, first", took, drainDeadline)
	}
	if _, err := srv.p.Wait(upgradeStep); err != nil {
		t.Fatalf("the server did not exit: %v", err)
	}
	if _, err := os.Stat(srv.pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after the final stop: %v; want it removed", err)
	}
}

// baton.HurrySignal to a draining generation (what Options.MaxDraining
// sends the oldest) ends its drain at once, long before its deadline: its
// stream ends with grpcdrain's status, and the client resumes it on the
// successor without a gap.
func TestHurryEndsDrain(t *testing.T) {
	const longDrain = 10 * time.Minute // never reached: Hurry ends it
	srv := startServerDrain(t, "grpc", longDrain)
	cc := dial(t, srv.addr)
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), upgradeStep)
	defer cancel()
	cs, err := cc.NewStream(ctx, CountDesc, CountMethod)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(CountRequest(MaxCount, 0, streamInterval)); err != nil {
		t.Fatal(err)
	}
	cs.CloseSend()
	if err := cs.RecvMsg(new(structpb.Struct)); err != nil {
		t.Fatalf("first message: %v", err)
	}
	old := srv.Current()
	srv.Upgrade()
	// The old generation drains, its stream still running; a message
	// after the upgrade shows it is still served there.
	if err := cs.RecvMsg(new(structpb.Struct)); err != nil {
		t.Fatalf("a message while draining: %v", err)
	}
	if err := syscall.Kill(old, baton.HurrySignal); err != nil {
		t.Fatal(err)
	}
	next := 2
	for {
		m := new(structpb.Struct)
		if err = cs.RecvMsg(m); err != nil {
			break
		}
		if tick, err := ParseTick(m); err != nil || tick.Seq != next || tick.PID != old {
			t.Fatalf("message %v (%v); want seq %d from %d", m, err, next, old)
		}
		next++
	}
	r, ok := grpcdrain.Resumption(err, cs.Trailer())
	if !ok || r != strconv.Itoa(next) {
		t.Fatalf("stream ended with %v, trailer %v; want grpcdrain's status resuming at %d", err, cs.Trailer(), next)
	}
	if err := proctest.Reap(old, upgradeStep); err != nil {
		t.Fatalf("the hurried generation did not exit: %v", err)
	}
	// Resumed on the successor, from where it stopped.
	cs, err = cc.NewStream(ctx, CountDesc, CountMethod)
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(CountRequest(next+1, next, streamInterval)); err != nil {
		t.Fatal(err)
	}
	cs.CloseSend()
	m := new(structpb.Struct)
	if err := cs.RecvMsg(m); err != nil {
		t.Fatal(err)
	}
	if tick, err := ParseTick(m); err != nil || tick.Seq != next || tick.PID != srv.Current() {
		t.Errorf("resumed stream: %v (%v); want seq %d from %d", m, err, next, srv.Current())
	}
	srv.Stop()
}
