package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
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
	"github.com/batonhq/baton/internal/proctest"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// The server runs as this test binary re-executed: every generation,
// successors included, is a real process with a real UDP socket.
func init() {
	proctest.Register("http3", func() { os.Exit(Main("http3", os.Args[1:], os.Stderr)) })
}

func TestMain(m *testing.M) { proctest.Main(m) }

// upgradeStep bounds each step of an upgrade as the test sees it, and each
// request: generous for a race-instrumented binary on two busy cores; a
// healthy step takes well under a second.
const upgradeStep = 30 * time.Second

// The load: 32 clients, each on its own long-lived QUIC connection (one
// http3.Transport each), every fourth request slow so that requests are
// in flight at every handover.
const (
	clients   = 32
	pace      = 10 * time.Millisecond // between one client's requests: ~2,000 requests/s in all at most, which two cores serve under -race
	slowEvery = 4                     // every slowEvery-th request asks ?delay=slowDelay
	slowDelay = 100 * time.Millisecond
	// steadyGap is the quiet time after each upgrade (every client
	// answered by the new generation) before the next: the steady
	// state the latency during upgrades is compared with.
	steadyGap     = 300 * time.Millisecond
	drainDeadline = 5 * time.Second
	// clientIdle is the clients' QUIC idle timeout: short, so that a
	// connection left without its server (no routing) shows as an idle
	// timeout within the run instead of after quic-go's 30 s.
	clientIdle = 5 * time.Second
	// loadLimit bounds every load loop in time, whatever happens to
	// the test's own control flow.
	loadLimit = 10 * time.Minute
)

// server is one run of the example: its generations in order.
type server struct {
	p       *proctest.Proc
	pidFile string
	addr    string
	roots   *x509.CertPool
	*proctest.Generations
}

func startServer(tb testing.TB, route bool) *server {
	tb.Helper()
	return startServerDrain(tb, route, drainDeadline)
}

func startServerDrain(tb testing.TB, route bool, drain time.Duration) *server {
	tb.Helper()
	dir := tb.TempDir()
	certFile, keyFile, roots := proctest.TLSCert(tb, dir)
	pidFile := filepath.Join(dir, "http3.pid")
	env := []string{"QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true"}
	p := proctest.StartServer(tb, "http3", env, "-listen", "127.0.0.1:0", "-pid-file", pidFile, "-drain", drain.String(),
		"-tls-cert", certFile, "-tls-key", keyFile, "-route="+strconv.FormatBool(route))
	s := &server{p: p, pidFile: pidFile, roots: roots}
	s.addr = proctest.Field(p.WaitLog(tb, "msg=serving", upgradeStep), "addr")
	s.Generations = proctest.FollowGenerations(tb, p, pidFile, upgradeStep)
	return s
}

// sample is one request as its client saw it.
type sample struct {
	start time.Time
	took  time.Duration
	slow  bool
}

// client makes requests in a loop on one http3.Transport, which keeps one
// QUIC connection at a time to the server, and records every connection
// it opens. No retries: a failed request shows. quic-go's http3 client
// still sends a request again, once, on a new connection when the server
// said it never processed it (a stream opened after GOAWAY, refused with
// H3_REQUEST_REJECTED, or a connection closed before the stream opened):
// that is part of HTTP/3 (RFC 9114 §5.2, §8.1), not an application retry,
// and no client can turn it off.
type client struct {
	id      int
	url     string
	h3      *http3.Transport
	mu      sync.Mutex
	conns   []*quic.Conn
	samples []sample
	failed  int
	// closedUnder counts the failed requests that the client's own
	// connection closed under (see goawayRace).
	closedUnder int
	errs        []error
	lastPID     atomic.Int64
	requests    int
}

func newClient(id int, addr string, roots *x509.CertPool) *client {
	c := &client{id: id, url: "https://" + addr + "/"}
	c.h3 = &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		QUICConfig:      &quic.Config{MaxIdleTimeout: clientIdle},
		Dial: func(ctx context.Context, addr string, tlsConf *tls.Config, conf *quic.Config) (*quic.Conn, error) {
			conn, err := quic.DialAddrEarly(ctx, addr, tlsConf, conf)
			if err == nil {
				c.mu.Lock()
				c.conns = append(c.conns, conn)
				c.mu.Unlock()
			}
			return conn, err
		},
	}
	return c
}

func (c *client) run(stop <-chan struct{}) {
	limit := time.After(loadLimit)
	for k := 0; ; k++ {
		select {
		case <-stop:
			return
		case <-limit:
			return
		case <-time.After(pace):
		}
		slow := k%slowEvery == c.id%slowEvery
		start := time.Now()
		pid, err := c.get(slow)
		took := time.Since(start)
		c.mu.Lock()
		c.requests++
		if err != nil {
			c.failed++
			if goawayRace(err) {
				c.closedUnder++
			}
			if len(c.errs) < 3 {
				c.errs = append(c.errs, err)
			}
		} else {
			c.samples = append(c.samples, sample{start: start, took: took, slow: slow})
		}
		c.mu.Unlock()
		if err == nil {
			c.lastPID.Store(int64(pid))
		}
	}
}

// get makes one request and returns the pid that answered.
func (c *client) get(slow bool) (int, error) {
	url := c.url
	if slow {
		url += "?delay=" + slowDelay.String()
	}
	ctx, cancel := context.WithTimeout(context.Background(), upgradeStep)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	rsp, err := c.h3.RoundTrip(req)
	if err != nil {
		return 0, err
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	if err != nil {
		return 0, fmt.Errorf("reading the body: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(string(b), "pid="), "\n"))
	if rsp.StatusCode != http.StatusOK || err != nil || !strings.HasPrefix(string(b), "pid=") {
		return 0, fmt.Errorf("GET %s: %s %q; want 200 \"pid=PID\"", url, rsp.Status, b)
	}
	return pid, nil
}

// figures are one run's counts.
type figures struct {
	upgrades                int
	requests, failed        int
	closedUnder             int // of failed: goawayRace
	handshakes              int
	graceful, idle, resets  int
	otherEnds               int
	open                    int
	relayed, received       int
	relayDropped, queueDrop int
	atDeadline, refused     int
	drains                  []time.Duration
	p99Steady, p99Upgrade   time.Duration
	nSteady, nUpgrade       int
	elapsed                 time.Duration
}

// meanDrain is the mean time a retiring generation took to drain.
func (f figures) meanDrain() time.Duration {
	if len(f.drains) == 0 {
		return 0
	}
	var total time.Duration
	for _, d := range f.drains {
		total += d
	}
	return total / time.Duration(len(f.drains))
}

func (f figures) String() string {
	return fmt.Sprintf("%d upgrades in %v: mean drain %v; requests %d, failed %d (%d closed under the request by the client, after GOAWAY); QUIC handshakes %d; connections ended gracefully %d, by idle timeout %d, by stateless reset %d, otherwise %d, never ended %d; datagrams relayed %d, received by old generations %d, relay dropped %d, queue dropped %d; drains: connections closed at the deadline %d, handshakes refused %d; p99 of fast requests steady %v (%d), during upgrades %v (%d)",
		f.upgrades, f.elapsed.Round(time.Millisecond), f.meanDrain().Round(time.Millisecond), f.requests, f.failed, f.closedUnder, f.handshakes, f.graceful, f.idle, f.resets, f.otherEnds, f.open,
		f.relayed, f.received, f.relayDropped, f.queueDrop, f.atDeadline, f.refused, f.p99Steady, f.nSteady, f.p99Upgrade, f.nUpgrade)
}

// window is a stretch of an upgrade: from SIGHUP until every client was
// answered by the new generation.
type window struct{ from, to time.Time }

// runUpgrades serves the load through upgrades and returns the counts.
func runUpgrades(tb testing.TB, route bool, upgrades int) figures {
	srv := startServer(tb, route)
	start := time.Now()

	cs := make([]*client, clients)
	for i := range cs {
		cs[i] = newClient(i, srv.addr, srv.roots)
	}
	defer func() {
		for _, c := range cs {
			c.h3.Close()
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, c := range cs {
		wg.Go(func() { c.run(stop) })
	}
	stopClients := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopClients()

	// Every client must have been answered by the serving generation
	// before the next upgrade: so each went through every GOAWAY. Polled:
	// the clients' progress is theirs, not an event of ours.
	waitAnswered := func(pid int) {
		deadline := time.Now().Add(upgradeStep)
		for _, c := range cs {
			for c.lastPID.Load() != int64(pid) {
				if time.Now().After(deadline) {
					stopClients()
					tb.Fatalf("client %d: no answer from generation %d within %v (errors %v)", c.id, pid, upgradeStep, c.errs)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
	waitAnswered(srv.Current())
	var windows []window
	for range upgrades {
		time.Sleep(steadyGap)
		w := window{from: time.Now()}
		pid := srv.Upgrade()
		waitAnswered(pid)
		w.to = time.Now()
		windows = append(windows, w)
	}
	stopClients()
	srv.Stop()

	f := figures{upgrades: upgrades, elapsed: time.Since(start)}
	var steady, during []time.Duration
	logged := 0 // errors logged: a few say what failed; the rest are counted
	for _, c := range cs {
		c.mu.Lock()
		f.requests += c.requests
		f.failed += c.failed
		f.closedUnder += c.closedUnder
		for _, err := range c.errs {
			if logged++; logged <= 5 {
				tb.Logf("client %d: %v", c.id, err)
			}
		}
		for _, s := range c.samples {
			if s.slow {
				continue
			}
			if slices.ContainsFunc(windows, func(w window) bool { return !s.start.Before(w.from) && s.start.Before(w.to) }) {
				during = append(during, s.took)
			} else {
				steady = append(steady, s.took)
			}
		}
		conns := c.conns
		c.mu.Unlock()
		f.handshakes += len(conns)
		for _, conn := range conns {
			// Every generation drained (the last one on SIGTERM), each
			// with GOAWAY: every connection has ended or ends now.
			select {
			case <-conn.Context().Done():
			case <-time.After(upgradeStep):
				f.open++
				continue
			}
			switch cause := context.Cause(conn.Context()); {
			case isGraceful(cause):
				f.graceful++
			case errors.As(cause, new(*quic.IdleTimeoutError)):
				f.idle++
			case errors.As(cause, new(*quic.StatelessResetError)):
				f.resets++
			default:
				f.otherEnds++
				if logged++; logged <= 5 {
					tb.Logf("client %d: a connection ended with %v", c.id, cause)
				}
			}
		}
	}
	f.p99Steady, f.nSteady = p99(steady), len(steady)
	f.p99Upgrade, f.nUpgrade = p99(during), len(during)
	for _, l := range strings.Split(srv.p.Output(), "\n") {
		if !strings.Contains(l, "msg=drained ") {
			continue
		}
		n := func(k string) int { v, _ := strconv.Atoi(proctest.Field(l, k)); return v }
		f.relayed += n("relayed")
		f.received += n("received")
		f.relayDropped += n("relay_dropped")
		f.queueDrop += n("queue_dropped")
		f.atDeadline += n("at_deadline")
		f.refused += n("refused")
		if d, err := time.ParseDuration(proctest.Field(l, "took")); err == nil {
			f.drains = append(f.drains, d)
		}
	}
	// The final stop drains too; only the upgrades' drains count.
	if len(f.drains) == upgrades+1 {
		f.drains = f.drains[:upgrades]
	}
	return f
}

// goawayRace reports a request that failed because the client closed its
// own connection under it with H3_NO_ERROR ("H3_NO_ERROR (local)"): a
// race in quic-go's HTTP/3 client (v0.65.0). Receiving GOAWAY, the
// client closes the connection at once if it tracks no request stream
// (ClientConn.handleControlStream); a request that has just opened its
// stream and passed the check for GOAWAY, but is not tracked yet
// (openRequestStream, between that check and TrackStream), then has its
// connection closed under it by its own client. It hits whatever the
// server does, so no server can avoid it; the same area
// had two such races fixed upstream (quic-go#5522, #5730). The tests
// bound it, and count every other failure as one.
func goawayRace(err error) bool {
	var he *http3.Error
	return errors.As(err, &he) && he.ErrorCode == http3.ErrCodeNoError && !he.Remote
}

// isGraceful: the connection was closed with H3_NO_ERROR, by the client
// once GOAWAY came and its requests were done, or by the server at its
// drain deadline.
func isGraceful(err error) bool {
	var ae *quic.ApplicationError
	return errors.As(err, &ae) && ae.ErrorCode == quic.ApplicationErrorCode(http3.ErrCodeNoError)
}

func p99(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	slices.Sort(d)
	return d[(len(d)*99)/100]
}

// 32 clients on long-lived QUIC connections make requests (a quarter of
// them slow, so that requests cross every handover) through 20 upgrades
// (BATON_HTTP3_UPGRADES): no request fails, and every connection ends
// gracefully, by H3_NO_ERROR after GOAWAY — never by an idle timeout or a
// stateless reset, which is how a connection whose datagrams reach the
// wrong generation ends.
func TestUpgradesUnderLoad(t *testing.T) {
	f := runUpgrades(t, true, proctest.EnvInt(t, "BATON_HTTP3_UPGRADES", 20))
	t.Logf("route=on: %v", f)
	// Every failure but the client library's own race (goawayRace)
	// fails the test; that one is bounded: seen at most once in a run of
	// 20 upgrades (640 GOAWAYs reaching clients), and in none of most.
	if other := f.failed - f.closedUnder; other != 0 {
		t.Errorf("%d of %d requests failed (%d more closed under by the client after GOAWAY); want 0", other, f.requests, f.closedUnder)
	}
	if bound := max(2, f.upgrades/10); f.closedUnder > bound {
		t.Errorf("%d requests closed under by their client's own connection after GOAWAY (quic-go's race, goawayRace); want at most %d in %d upgrades", f.closedUnder, bound, f.upgrades)
	}
	if f.idle != 0 || f.resets != 0 || f.otherEnds != 0 || f.open != 0 {
		t.Errorf("of %d connections, %d ended by idle timeout, %d by stateless reset, %d otherwise, %d never; want all %d graceful",
			f.handshakes, f.idle, f.resets, f.otherEnds, f.open, f.handshakes)
	}
	// Slow requests were in flight at the handovers: the old
	// generations must have been reached through the relay.
	if f.relayed == 0 || f.received == 0 {
		t.Errorf("%d datagrams relayed, %d received by old generations; want the routing at work", f.relayed, f.received)
	}
}

// BenchmarkUpgrades runs the load through b.N upgrades with quicroute's
// routing and without it (every generation reading the socket, the old
// one shut down by http3.Server.Shutdown: what quic-go servers do today),
// and reports for each the requests, the failed ones, the QUIC handshakes,
// how connections ended, the datagrams relayed and the p99 latency of
// fast requests in steady state and during upgrades. Run it with a count
// of upgrades:
//
//	go test -run '^$' -bench Upgrades -benchtime 20x ./server
//
// The sub-benchmarks are named route=on and route=off.
func BenchmarkUpgrades(b *testing.B) {
	for _, route := range []bool{true, false} {
		name := "route=on"
		if !route {
			name = "route=off"
		}
		b.Run(name, func(b *testing.B) {
			f := runUpgrades(b, route, b.N)
			b.Logf("%s: %v", name, f)
			b.ReportMetric(float64(f.requests), "requests")
			b.ReportMetric(float64(f.failed), "failed")
			b.ReportMetric(float64(f.closedUnder), "failed-client-race")
			b.ReportMetric(float64(f.handshakes), "handshakes")
			b.ReportMetric(float64(f.idle), "idle-timeouts")
			b.ReportMetric(float64(f.resets), "resets")
			b.ReportMetric(float64(f.upgrades), "upgrades")
			b.ReportMetric(float64(f.relayed), "relayed")
			b.ReportMetric(float64(f.meanDrain().Milliseconds()), "drain-ms")
			b.ReportMetric(float64(f.p99Steady.Microseconds())/1000, "p99-steady-ms")
			b.ReportMetric(float64(f.p99Upgrade.Microseconds())/1000, "p99-upgrade-ms")
		})
	}
}

// SIGTERM drains and stops: a slow request in progress completes, its
// connection then ends gracefully, the process exits 0 and the final stop
// removes the PID file.
func TestStopDrains(t *testing.T) {
	srv := startServer(t, true)
	c := newClient(0, srv.addr, srv.roots)
	defer c.h3.Close()
	if pid, err := c.get(false); err != nil || pid != srv.Current() {
		t.Fatalf("GET / = %d, %v; want pid=%d", pid, err, srv.Current())
	}
	type result struct {
		pid int
		err error
	}
	done := make(chan result, 1)
	go func() {
		pid, err := c.get(true)
		done <- result{pid, err}
	}()
	// The slow request is on its way: its delay outlasts this wait, so it
	// is in progress when SIGTERM arrives.
	time.Sleep(slowDelay / 4)
	srv.Stop()
	select {
	case r := <-done:
		if r.err != nil || r.pid != srv.Current() {
			t.Fatalf("the slow request across SIGTERM = %d, %v; want pid=%d", r.pid, r.err, srv.Current())
		}
	case <-time.After(upgradeStep):
		t.Fatal("the slow request did not end")
	}
	c.mu.Lock()
	conns := c.conns
	c.mu.Unlock()
	for _, conn := range conns {
		select {
		case <-conn.Context().Done():
		case <-time.After(upgradeStep):
			t.Fatal("a connection is still open after the server stopped")
		}
		if cause := context.Cause(conn.Context()); !isGraceful(cause) {
			t.Errorf("a connection ended with %v; want H3_NO_ERROR", cause)
		}
	}
	if _, err := os.Stat(srv.pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the PID file is still there after the final stop (%v)", err)
	}
}

// baton.HurrySignal to a draining generation ends its drain at once: the
// request it still serves is cut, its connection closed with H3_NO_ERROR
// (never left to an idle timeout), and the client's next request goes to
// the successor.
func TestHurryEndsDrain(t *testing.T) {
	const longDrain = 10 * time.Minute // never reached: Hurry ends it
	srv := startServerDrain(t, true, longDrain)
	c := newClient(0, srv.addr, srv.roots)
	defer c.h3.Close()
	if pid, err := c.get(false); err != nil || pid != srv.Current() {
		t.Fatalf("GET / = %d, %v; want pid=%d", pid, err, srv.Current())
	}
	errc := make(chan error, 1)
	go func() {
		// Longer than the test: only the hurry ends it.
		req, _ := http.NewRequest(http.MethodGet, c.url+"?delay=1h", nil)
		rsp, err := c.h3.RoundTrip(req)
		if err == nil {
			_, err = io.ReadAll(rsp.Body)
			rsp.Body.Close()
		}
		errc <- err
	}()
	// Time for the request to reach the server, which has no hook to
	// say so; an upgrade takes longer still.
	time.Sleep(slowDelay / 4)
	old := srv.Current()
	srv.Upgrade()
	if err := syscall.Kill(old, baton.HurrySignal); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("the hour-long request completed; want it cut by the hurry")
		}
	case <-time.After(upgradeStep):
		t.Fatal("the hour-long request still runs after the hurry")
	}
	if err := proctest.Reap(old, upgradeStep); err != nil {
		t.Fatalf("the hurried generation did not exit: %v", err)
	}
	c.mu.Lock()
	first := c.conns[0]
	c.mu.Unlock()
	select {
	case <-first.Context().Done():
	case <-time.After(upgradeStep):
		t.Fatal("the hurried generation's connection is still open")
	}
	if cause := context.Cause(first.Context()); !isGraceful(cause) {
		t.Errorf("the hurried generation's connection ended with %v; want H3_NO_ERROR", cause)
	}
	line := srv.p.WaitLog(t, fmt.Sprintf("msg=drained pid=%d ", old), upgradeStep)
	if proctest.Field(line, "at_deadline") != "1" || !strings.Contains(line, `cause="context canceled"`) {
		t.Errorf("drain log %q: want 1 connection closed when the hurry cancelled the drain", line)
	}
	if pid, err := c.get(false); err != nil || pid != srv.Current() {
		t.Errorf("GET / after the hurry = %d, %v; want pid=%d", pid, err, srv.Current())
	}
	srv.Stop()
}
