//go:build linux

package supervisor_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton/supervisor"
	"golang.org/x/sys/unix"
)

// scrape gets the master's metrics once (no retry) and parses them with
// the strict checker.
func scrape(addr string) (map[string]float64, error) {
	// No keep-alive: a connection left in the pool would be one more
	// descriptor of the master's, which rig.settled counts.
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != supervisor.MetricsContentType {
		return nil, fmt.Errorf("GET /metrics: %s, Content-Type %q; want 200, %q", resp.Status, resp.Header.Get("Content-Type"), supervisor.MetricsContentType)
	}
	return supervisor.ParseMetrics(string(body))
}

// figures checks the status and the metrics against what the test did.
type figures struct {
	ok, failed, restarts int
	lastError            string // in Upgrades.LastError, if not empty
	servingPID           int    // the serving generation's pid, if not 0
}

func checkFigures(st *supervisor.Status, ms map[string]float64, want figures) error {
	var errs []string
	if st.Upgrades.OK != want.ok || st.Upgrades.Failed != want.failed || st.Restarts != want.restarts {
		errs = append(errs, fmt.Sprintf("status: upgrades %d ok, %d failed, %d restarts; want %d, %d, %d", st.Upgrades.OK, st.Upgrades.Failed, st.Restarts, want.ok, want.failed, want.restarts))
	}
	if want.lastError != "" && !strings.Contains(st.Upgrades.LastError, want.lastError) {
		errs = append(errs, fmt.Sprintf("status: last error %q; want %q in it", st.Upgrades.LastError, want.lastError))
	}
	if want.failed > 0 && st.Upgrades.LastErrorAt.IsZero() {
		errs = append(errs, "status: no time for the last failure")
	}
	for series, v := range map[string]int{
		`baton_upgrades_total{result="ok"}`:     want.ok,
		`baton_upgrades_total{result="failed"}`: want.failed,
		`baton_restarts_total`:                  want.restarts,
	} {
		if got, ok := ms[series]; !ok || got != float64(v) {
			errs = append(errs, fmt.Sprintf("metrics: %s = %v (present %v); want %d", series, got, ok, v))
		}
	}
	for _, g := range st.Generations {
		// A draining one may have exited between the loop's answer
		// and the read of its /proc entry: its RSS is then unknown, 0.
		if g.Age <= 0 || g.RSS <= 0 && g.State == "serving" {
			errs = append(errs, fmt.Sprintf("status: generation %d (%s): RSS %d, age %v; want both above 0", g.Gen, g.State, g.RSS, g.Age))
		}
		if g.State == "serving" && want.servingPID != 0 && g.PID != want.servingPID {
			errs = append(errs, fmt.Sprintf("status: generation %d (pid %d) serves; want pid %d", g.Gen, g.PID, want.servingPID))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// TestStatusAndMetrics reads "baton status --json" (the control socket's
// status) and GET /metrics while the test reloads, successfully and not,
// and kills the serving worker, under load; and checks each figure
// against what happened.
func TestStatusAndMetrics(t *testing.T) {
	metrics := freeAddr(t)
	r := newRig(t, rigConfig{flags: []string{"--probation", "1s", "--metrics", metrics}})

	// At rest, a known number of connections: 10 keep-alive clients,
	// each answered once, then silent. The demo server keeps idle
	// connections open.
	const held = 10
	var conns []net.Conn
	for range held {
		c, err := net.DialTimeout("tcp", r.addr, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: test\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("a held connection's request: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	st, err := r.m.status()
	if err != nil {
		t.Fatal(err)
	}
	g := st.Generations[0]
	ms, err := scrape(metrics)
	if err != nil {
		t.Fatal(err)
	}
	series := fmt.Sprintf(`baton_generation_connections{generation="%d",pid="%d"}`, g.Gen, g.PID)
	if g.Connections != held || ms[series] != held {
		t.Errorf("generation %d holds %d connections (status), %v (metrics); want %d", g.Gen, g.Connections, ms[series], held)
	}
	if rss := ms[fmt.Sprintf(`baton_generation_resident_memory_bytes{generation="%d",pid="%d"}`, g.Gen, g.PID)]; g.RSS <= 0 || rss != float64(g.RSS) && rss <= 0 {
		t.Errorf("generation %d: RSS %d (status), %v (metrics); want above 0", g.Gen, g.RSS, rss)
	}
	if err := checkFigures(st, ms, figures{servingPID: g.PID}); err != nil {
		t.Error(err)
	}
	t.Logf("at rest: generation %d (pid %d) holds %d connections, RSS %d bytes, age %v", g.Gen, g.PID, g.Connections, g.RSS, g.Age)
	for _, c := range conns {
		c.Close()
	}

	// Under load: each step does something and checks the figures.
	check := func(want figures) error {
		st, err := r.m.status()
		if err != nil {
			return err
		}
		ms, err := scrape(metrics)
		if err != nil {
			return err
		}
		if err := checkFigures(st, ms, want); err != nil {
			return err
		}
		// Two reads, one after the other: a draining generation may
		// end in between, but the serving one is in both.
		for _, g := range st.Generations {
			info := fmt.Sprintf(`baton_generation_info{generation="%d",pid="%d",state="serving"}`, g.Gen, g.PID)
			if g.State == "serving" && ms[info] != 1 {
				return fmt.Errorf("metrics: no %s", info)
			}
		}
		return nil
	}
	var servingPID int
	rep := r.load(false,
		func(ctx context.Context) error { // 1: a reload that works
			res, err := r.reloadOK(ctx)
			if err != nil {
				return err
			}
			servingPID = res.NewPID
			return check(figures{ok: 1, servingPID: servingPID})
		},
		func(ctx context.Context) error { // 2: a new generation that exits before ready
			r.setModes("exit", "ok")
			if err := r.reloadFails(ctx, "exited before it was ready: exit status 3", ""); err != nil {
				return err
			}
			return check(figures{ok: 1, failed: 1, lastError: "exited before it was ready", servingPID: servingPID})
		},
		func(ctx context.Context) error { // 3: one that dies on probation
			r.setModes("ready-exit-100", "ok")
			if err := r.reloadFails(ctx, "ms into probation: exit status 6", ""); err != nil {
				return err
			}
			return check(figures{ok: 1, failed: 2, lastError: "into probation", servingPID: servingPID})
		},
		func(ctx context.Context) error { // 4: a reload that works, after its probation
			res, err := r.reloadOK(ctx)
			if err != nil {
				return err
			}
			if res.Duration < time.Second {
				return fmt.Errorf("the reload took %v; want no less than its probation, 1s", res.Duration)
			}
			servingPID = res.NewPID
			return check(figures{ok: 2, failed: 2, servingPID: servingPID})
		},
		func(ctx context.Context) error { // 5: the serving worker is killed: a restart
			if err := unix.Kill(servingPID, unix.SIGKILL); err != nil {
				return err
			}
			st, err := r.waitState(ctx, "generation 6 serving", serving(6))
			if err != nil {
				return err
			}
			return check(figures{ok: 2, failed: 2, restarts: 1, servingPID: st.Generations[0].PID})
		},
	)
	// Two workers die with requests in flight (step 3 on probation, step
	// 5 killed): at most one request per client each, 2 × 32.
	r.bounded(rep, 64)
	st = r.settled()
	// Generations 1 and 2 drained to their end; 6 took over from the
	// killed 5 without a drain.
	if st.Drains.Count != 2 || st.Drains.Sum <= 0 {
		t.Errorf("drains: %+v; want 2 that took some time", st.Drains)
	}
	ms, err = scrape(metrics)
	if err != nil {
		t.Fatal(err)
	}
	if ms["baton_drain_duration_seconds_count"] != 2 || ms[`baton_drain_duration_seconds_bucket{le="+Inf"}`] != 2 {
		t.Errorf("metrics: drain histogram count %v, +Inf %v; want 2", ms["baton_drain_duration_seconds_count"], ms[`baton_drain_duration_seconds_bucket{le="+Inf"}`])
	}
	t.Logf("at the end: upgrades %+v, restarts %d, drains %d (sum %v)", st.Upgrades, st.Restarts, st.Drains.Count, st.Drains.Sum)
	r.stop(0)
}
