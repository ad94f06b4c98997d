package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fault is what a testServer does wrong while an "upgrade" is under way.
type fault int

const (
	noFault   fault = iota
	rebind          // Upgrade closes the listener and listens again: refused
	resetConn       // abort the connection with SetLinger(0): reset
	dropConn        // close a keep-alive connection without answering: eof
	status500       // answer 500 to every other request: non-200
	hang            // answer only after 1s: timeout
)

// testServer is a real HTTP server on 127.0.0.1 that writes pid=<n> in its
// bodies, honours ?delay=, and misbehaves in one way (its fault) during the
// "upgrades" that its Upgrade method fakes.
type testServer struct {
	t     *testing.T
	fault fault
	addr  string
	srv   *http.Server

	pid       atomic.Int64 // the fake serving pid, bumped by each upgrade
	misbehave atomic.Bool  // the fault is active
	seq       atomic.Int64 // requests seen
	failSlow  atomic.Bool  // answer requests with ?delay= with 503

	mu sync.Mutex
	ln net.Listener
}

func newTestServer(t *testing.T, f fault) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen: %v", err)
	}
	s := &testServer{t: t, fault: f, addr: ln.Addr().String(), ln: ln}
	s.pid.Store(1000)
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 5 * time.Second}
	go s.srv.Serve(ln)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

func (s *testServer) url() string { return "http://" + s.addr + "/hello?x=1" }

func (s *testServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := s.seq.Add(1)
	if d := r.URL.Query().Get("delay"); d != "" {
		dur, err := time.ParseDuration(d)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if !sleepCtx(r.Context(), dur) {
			return
		}
		if s.failSlow.Load() {
			http.Error(w, "too slow", http.StatusServiceUnavailable)
			return
		}
	}
	if r.URL.Query().Get("x") != "1" {
		http.Error(w, "query lost", http.StatusBadRequest)
		return
	}
	if s.misbehave.Load() {
		switch s.fault {
		case resetConn:
			conn := s.hijack(w)
			conn.(*net.TCPConn).SetLinger(0) // close sends RST, not FIN
			conn.Close()
			return
		case dropConn:
			if !r.Close { // only keep-alive connections
				s.hijack(w).Close()
				return
			}
		case status500:
			if n%2 == 0 {
				http.Error(w, "upgrading", http.StatusInternalServerError)
				return
			}
		case hang:
			if !sleepCtx(r.Context(), time.Second) {
				return
			}
		}
	}
	body := fmt.Sprintf("hello from pid=%d\n", s.pid.Load())
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	io.WriteString(w, body)
}

func (s *testServer) hijack(w http.ResponseWriter) net.Conn {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		s.t.Errorf("Hijack: %v", err)
		panic(http.ErrAbortHandler)
	}
	return conn
}

// Upgrade fakes an upgrade: the fault is active for 60ms, then the fake pid
// changes.
func (s *testServer) Upgrade(ctx context.Context) error {
	s.misbehave.Store(true)
	defer s.misbehave.Store(false)
	if s.fault == rebind {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.ln.Close()
		sleepCtx(ctx, 60*time.Millisecond)
		ln, err := net.Listen("tcp", s.addr)
		if err != nil {
			return fmt.Errorf("re-listen on %s: %w", s.addr, err)
		}
		s.ln = ln
		go s.srv.Serve(ln)
	} else if !sleepCtx(ctx, 60*time.Millisecond) {
		return ctx.Err()
	}
	s.pid.Add(1)
	return nil
}

// sleepCtx sleeps for d and reports whether ctx stayed alive throughout.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// quick is a Config that keeps a run well under a second.
func quick(url string, upgrade func(context.Context) error) Config {
	return Config{
		URL:       url,
		Clients:   3,
		Upgrades:  3,
		Upgrade:   upgrade,
		Warmup:    150 * time.Millisecond,
		Settle:    100 * time.Millisecond,
		SlowDelay: 150 * time.Millisecond,
	}
}

// runFor calls Run and fails the test if it takes longer than limit.
func runFor(t *testing.T, limit time.Duration, ctx context.Context, c Config) (*Report, error) {
	t.Helper()
	type result struct {
		rep *Report
		err error
	}
	done := make(chan result, 1)
	start := time.Now()
	go func() {
		rep, err := Run(ctx, c)
		done <- result{rep, err}
	}()
	select {
	case r := <-done:
		return r.rep, r.err
	case <-time.After(limit):
		t.Fatalf("Run(%s) still running after %v", c.URL, time.Since(start))
		return nil, nil
	}
}

func textOf(t *testing.T, rep *Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatalf("WriteText: %v", err)
	}
	return b.String()
}

func TestRunCleanUpgrades(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, noFault)
	var progress []Progress
	c := quick(s.url(), s.Upgrade)
	c.Progress = func(p Progress) { progress = append(progress, p) }
	rep, err := runFor(t, 15*time.Second, t.Context(), c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	text := textOf(t, rep)
	t.Logf("report:\n%s", text)

	if rep.Failed() {
		t.Errorf("Failed() = true against a server that never fails")
	}
	if rep.Stopped != "" {
		t.Errorf("Stopped = %q, want empty", rep.Stopped)
	}
	if len(rep.Modes) != 2 || rep.Modes[0].Mode != Fresh || rep.Modes[1].Mode != KeepAlive {
		t.Fatalf("Modes = %+v, want fresh then keepalive", rep.Modes)
	}
	for _, m := range rep.Modes {
		if m.Requests == 0 {
			t.Errorf("mode %s made no requests", m.Mode)
		}
		if m.Clients != 3 {
			t.Errorf("mode %s: Clients = %d, want 3", m.Mode, m.Clients)
		}
	}
	if got := rep.Modes[0].Requests + rep.Modes[1].Requests; got != rep.Requests {
		t.Errorf("Requests = %d, want the modes' sum %d", rep.Requests, got)
	}
	if u := rep.Upgrades; u.Planned != 3 || u.OK != 3 || u.Failed != 0 {
		t.Errorf("Upgrades = %+v, want 3 planned, 3 ok", u)
	}
	if rep.Slow == nil || rep.Slow.OK != 3 || rep.Slow.Failed != 0 {
		t.Errorf("Slow = %+v, want 3 ok", rep.Slow)
	}

	// One pid per generation, in order, each having served something.
	var pids []int
	var perPID int64
	for _, p := range rep.PIDs {
		pids = append(pids, p.PID)
		perPID += p.Requests
	}
	if fmt.Sprint(pids) != "[1000 1001 1002 1003]" {
		t.Errorf("PIDs = %v, want [1000 1001 1002 1003]", pids)
	}
	if perPID != rep.Requests {
		t.Errorf("requests per pid add up to %d, want %d", perPID, rep.Requests)
	}

	// Upgrades sleep 60ms, so they take at least that and not absurdly more.
	u := rep.Upgrades
	if u.P50 < 60*time.Millisecond || u.P50 > u.P99 || u.P99 > u.Max || u.Max > 5*time.Second {
		t.Errorf("upgrade latency p50 %v p99 %v max %v: want 60ms <= p50 <= p99 <= max < 5s", u.P50, u.P99, u.Max)
	}
	for name, l := range map[string]Latency{"steady": rep.Steady, "near upgrade": rep.NearUpgrade} {
		if l.Requests == 0 || l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max || l.Max > 5*time.Second {
			t.Errorf("%s latency %+v: want requests and 0 < p50 <= p99 <= max < 5s", name, l)
		}
	}
	if rep.Steady.Requests+rep.NearUpgrade.Requests > rep.Requests {
		t.Errorf("steady %d + near %d requests > %d requests in all", rep.Steady.Requests, rep.NearUpgrade.Requests, rep.Requests)
	}
	if !strings.Contains(text, "PASS: 0 failed requests across 3 upgrades (") {
		t.Errorf("WriteText has no PASS line")
	}

	// Progress: one call per upgrade at least, counts never go back, the
	// last one is Done and final.
	if len(progress) < 4 {
		t.Fatalf("Progress called %d times, want at least 4", len(progress))
	}
	for i := 1; i < len(progress); i++ {
		a, b := progress[i-1], progress[i]
		if b.UpgradesDone < a.UpgradesDone || b.Requests < a.Requests || b.Elapsed < a.Elapsed || a.Done {
			t.Errorf("Progress call %d = %+v after %+v: want monotonic, Done only last", i, b, a)
		}
	}
	last := progress[len(progress)-1]
	if !last.Done || last.UpgradesDone != 3 || last.UpgradesTotal != 3 || last.Requests != rep.Requests {
		t.Errorf("last Progress = %+v, want Done, 3/3 upgrades, %d requests", last, rep.Requests)
	}

	// The JSON form carries the same numbers.
	js, err := json.Marshal(rep)
	if err != nil {
		t.Fatalf("json.Marshal(Report): %v", err)
	}
	var back Report
	if err := json.Unmarshal(js, &back); err != nil {
		t.Fatalf("json.Unmarshal: %v", err)
	}
	if back.Requests != rep.Requests || back.Upgrades.P99 != rep.Upgrades.P99 || len(back.PIDs) != len(rep.PIDs) {
		t.Errorf("JSON round trip lost data: %s", js)
	}
}

func TestRunDetectsFailures(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		fault fault
		mode  Mode // where the failures must show; "" for any
		class class
		tune  func(*Config)
	}{
		{name: "refused", fault: rebind, mode: Fresh, class: classRefused},
		{name: "reset", fault: resetConn, class: classReset},
		{name: "eof", fault: dropConn, mode: KeepAlive, class: classEOF},
		{name: "non-200", fault: status500, class: classNon200},
		{name: "timeout", fault: hang, class: classTimeout, tune: func(c *Config) {
			c.RequestTimeout = 100 * time.Millisecond
			c.SlowDelay = -1
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, tc.fault)
			c := quick(s.url(), s.Upgrade)
			c.Upgrades = 2
			if tc.tune != nil {
				tc.tune(&c)
			}
			rep, err := runFor(t, 15*time.Second, t.Context(), c)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			text := textOf(t, rep)
			t.Logf("report:\n%s", text)

			var got int64
			for _, m := range rep.Modes {
				if tc.mode == "" || m.Mode == tc.mode {
					f := m.Failures
					got += *f.counter(tc.class)
					if *f.counter(tc.class) > 0 && len(f.Examples[tc.class.String()]) == 0 {
						t.Errorf("mode %s counts %s failures but keeps no example", m.Mode, tc.class)
					}
				}
			}
			if got == 0 {
				t.Errorf("no %s failures counted (mode %q)", tc.class, tc.mode)
			}
			if !rep.Failed() {
				t.Errorf("Failed() = false with %d %s failures", got, tc.class)
			}
			if !strings.Contains(text, "\nFAIL: ") || !strings.Contains(text, tc.class.String()) {
				t.Errorf("WriteText has no FAIL line naming %s", tc.class)
			}
			if tc.fault == status500 && rep.Modes[0].Failures.Statuses[500]+rep.Modes[1].Failures.Statuses[500] == 0 {
				t.Errorf("non-200 failures not counted under status 500: %+v", rep.Modes)
			}
		})
	}
}

func TestRunFailedUpgradeAndSlowRequest(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, noFault)
	calls := 0
	c := quick(s.url(), func(ctx context.Context) error {
		calls++
		if calls == 2 {
			return errors.New("successor exited with status 1")
		}
		return s.Upgrade(ctx)
	})
	s.failSlow.Store(true)
	rep, err := runFor(t, 15*time.Second, t.Context(), c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	text := textOf(t, rep)
	t.Logf("report:\n%s", text)
	if u := rep.Upgrades; u.OK != 2 || u.Failed != 1 || len(u.Errors) != 1 || u.Errors[0] != "upgrade 2: successor exited with status 1" {
		t.Errorf("Upgrades = %+v, want 2 ok and upgrade 2 failed", u)
	}
	if rep.Slow == nil || rep.Slow.OK != 0 || rep.Slow.Failed != 3 || len(rep.Slow.Errors) != 3 {
		t.Errorf("Slow = %+v, want 3 failed", rep.Slow)
	}
	if !rep.Failed() || !strings.Contains(text, "FAIL: 3 failed slow requests, 1 failed upgrade across 3 upgrades") {
		t.Errorf("Failed() = %v, want true with a FAIL line for slow requests and the upgrade", rep.Failed())
	}
}

func TestRunNoResponse(t *testing.T) {
	t.Parallel()
	// A port nobody listens on: every dial is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen: %v", err)
	}
	closed := ln.Addr().String()
	ln.Close()

	// A listener that accepts and never answers.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("net.Listen: %v", err)
	}
	t.Cleanup(func() { mute.Close() })
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := mute.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()

	for _, tc := range []struct{ name, addr, want string }{
		{"refused", closed, "(last error: dial tcp " + closed + ": connect: connection refused)"},
		{"mute", mute.Addr().String(), "(no request finished)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := quick("http://"+tc.addr+"/", func(context.Context) error {
				t.Error("Upgrade called though the server never answered")
				return nil
			})
			rep, err := runFor(t, 3*time.Second, t.Context(), c)
			if !errors.Is(err, ErrNoResponse) || rep != nil {
				t.Fatalf("Run against %s = %v, %v; want nil, ErrNoResponse", tc.name, rep, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestRunStopsWithContext(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		cancel time.Duration // after Run starts
	}{
		{"during warmup", 50 * time.Millisecond},
		{"during upgrade", 300 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newTestServer(t, hang)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			c := quick(s.url(), func(ctx context.Context) error {
				// Every request from now on hangs, and so does the
				// upgrade, until the run is cancelled.
				s.misbehave.Store(true)
				<-ctx.Done()
				return ctx.Err()
			})
			c.Warmup = 200 * time.Millisecond
			time.AfterFunc(tc.cancel, cancel)
			rep, err := runFor(t, tc.cancel+2*time.Second, ctx, c)
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			t.Logf("report:\n%s", textOf(t, rep))
			if rep.Stopped != "context canceled" {
				t.Errorf("Stopped = %q, want %q", rep.Stopped, "context canceled")
			}
			if rep.Failed() {
				t.Errorf("Failed() = true: requests cut short by the caller were counted as failures")
			}
			if n := rep.Upgrades.OK + rep.Upgrades.Failed; n != 0 {
				t.Errorf("%d upgrades counted, want 0 (the only one was interrupted)", n)
			}
			if !strings.HasPrefix(rep.Verdict(), "INCOMPLETE: 0 failed requests across 0 of 3 upgrades") {
				t.Errorf("Verdict() = %q, want INCOMPLETE across 0 of 3", rep.Verdict())
			}
		})
	}
}

func TestRunMaxRequests(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, noFault)
	c := quick(s.url(), s.Upgrade)
	c.MaxRequests = 300
	c.Upgrades = 1000
	c.Warmup = 20 * time.Millisecond
	c.Settle = 20 * time.Millisecond
	c.SlowDelay = -1
	rep, err := runFor(t, 10*time.Second, t.Context(), c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if rep.Requests > 300 || rep.Requests == 0 {
		t.Errorf("Requests = %d, want 1..300", rep.Requests)
	}
	if !strings.Contains(rep.Stopped, "MaxRequests") {
		t.Errorf("Stopped = %q, want it to name MaxRequests", rep.Stopped)
	}
	if rep.Slow != nil {
		t.Errorf("Slow = %+v with SlowDelay < 0, want nil", rep.Slow)
	}
}

// Pausing clients POST with pauses between requests and keep their one
// connection while the server never closes it; keep-alive clients of a
// server that closes every third response reconnect, and the report
// counts it.
func TestRunPausingKeepsConnections(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, noFault)
	c := quick(s.url(), s.Upgrade)
	c.Modes = []Mode{Pausing}
	c.MaxPause = 40 * time.Millisecond
	rep, err := runFor(t, 15*time.Second, t.Context(), c)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	text := textOf(t, rep)
	t.Logf("report:\n%s", text)
	if p := rep.Problems(); len(p) > 0 {
		t.Errorf("problems: %q", p)
	}
	m := rep.Modes[0]
	if m.Mode != Pausing || m.Requests == 0 || m.Connections != int64(m.Clients) || m.Reconnects() != 0 {
		t.Errorf("pausing mode: %+v, reconnects %d; want requests on exactly one connection per client", m, m.Reconnects())
	}
	if !strings.Contains(text, "pausing 3 opened by 3 clients, 0 reconnects") {
		t.Errorf("the report does not say how many connections the clients opened")
	}
}

func TestReconnects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		m    ModeReport
		want int64
	}{
		{ModeReport{Mode: Fresh, Clients: 4, Connections: 100}, 0},
		{ModeReport{Mode: KeepAlive, Clients: 4, Connections: 4}, 0},
		{ModeReport{Mode: KeepAlive, Clients: 4, Connections: 10}, 6},
		{ModeReport{Mode: Pausing, Clients: 4, Connections: 3}, 0}, // a client that never connected
	} {
		if got := tc.m.Reconnects(); got != tc.want {
			t.Errorf("%+v: Reconnects() = %d, want %d", tc.m, got, tc.want)
		}
	}
}
