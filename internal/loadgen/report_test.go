package loadgen

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	t.Parallel()
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one p50", []time.Duration{7}, 50, 7},
		{"one p99", []time.Duration{7}, 99, 7},
		{"two p50", []time.Duration{1, 2}, 50, 1},
		{"two p99", []time.Duration{1, 2}, 99, 2},
		{"three p50", []time.Duration{1, 2, 3}, 50, 2},
		{"100 p50", hundred, 50, 50},
		{"100 p99", hundred, 99, 99},
		{"100 p100", hundred, 100, 100},
		{"100 p1", hundred, 1, 1},
		{"100 p0", hundred, 0, 1},
		{"100 p99.5", hundred, 99.5, 100},
	} {
		if got := percentile(tc.sorted, tc.p); got != tc.want {
			t.Errorf("%s: percentile(p%v) = %v, want %v", tc.name, tc.p, got, tc.want)
		}
	}
}

func TestIsNear(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	// Settle (300ms) shorter than nearUpgrade: the windows overlap.
	ups := []upgradeRecord{{start: 1000 * ms, end: 1100 * ms}, {start: 1400 * ms, end: 1500 * ms}}
	for _, tc := range []struct {
		at   time.Duration
		want bool
	}{
		{0, false},
		{999 * ms, false},
		{1000 * ms, true},
		{1599 * ms, true},
		{1600 * ms, true},
		{1700 * ms, true},
		{2000 * ms, true},
		{2001 * ms, false},
	} {
		if got := isNear(ups, tc.at); got != tc.want {
			t.Errorf("isNear(%v) = %v, want %v", tc.at, got, tc.want)
		}
	}
	if isNear(nil, time.Second) {
		t.Errorf("isNear with no upgrades = true")
	}
}

// sampleReport is a Report of 10 upgrades, without failures.
func sampleReport() *Report {
	return &Report{
		URL: "http://127.0.0.1:8080/",
		Modes: []ModeReport{
			{Mode: Fresh, Clients: 16, Requests: 6172},
			{Mode: KeepAlive, Clients: 16, Requests: 6173},
		},
		Requests:    12345,
		Upgrades:    UpgradeReport{Planned: 10, OK: 10, P50: 120 * time.Millisecond, P99: 180 * time.Millisecond, Max: 181 * time.Millisecond},
		Slow:        &SlowReport{Delay: time.Second, OK: 10, Spanning: 10},
		Steady:      Latency{Requests: 3000, P50: 210 * time.Microsecond, P99: 1100 * time.Microsecond, Max: 3 * time.Millisecond},
		NearUpgrade: Latency{Requests: 4000, P50: 300 * time.Microsecond, P99: 5 * time.Millisecond, Max: 9 * time.Millisecond},
		PIDs:        []PIDCount{{PID: 101, Requests: 5000}, {PID: 102, Requests: 7345}},
		Elapsed:     12345 * time.Millisecond,
	}
}

func TestWriteText(t *testing.T) {
	t.Parallel()
	failing := sampleReport()
	failing.Modes[1].Failures.add(fmt.Errorf("request 7 on connection: read response: %w", io.EOF))
	failing.Modes[1].Failures.add(&StatusError{Code: 503, Status: "503 Service Unavailable"})
	failing.Modes[0].Failures.add(fmt.Errorf("read response: %w", io.EOF))
	failing.FailedRequests = 3
	failing.Upgrades.OK, failing.Upgrades.Failed = 9, 1
	failing.Upgrades.Errors = []string{"upgrade 4: successor exited with status 1"}
	failing.Slow.OK, failing.Slow.Failed = 9, 1
	failing.Slow.Errors = []string{"upgrade 5: read response: EOF"}

	stopped := sampleReport()
	stopped.Stopped = "context canceled"
	stopped.Upgrades.OK = 3
	stopped.Slow = nil
	stopped.PIDs = nil

	for _, tc := range []struct {
		name    string
		rep     *Report
		failed  bool
		verdict string
		has     []string
	}{
		{"pass", sampleReport(), false,
			"PASS: 0 failed requests across 10 upgrades (12345 requests)",
			[]string{
				"http://127.0.0.1:8080/  fresh+keepalive × 16 clients  10 upgrades  12.3s\n",
				"mode       requests  refused  reset  eof  timeout  non-200  other\n",
				"fresh          6172        0      0    0        0        0      0\n",
				"keepalive      6173        0      0    0        0        0      0\n",
				"all           12345        0      0    0        0        0      0\n",
				"upgrades        10 ok, 0 failed; took p50 120ms, p99 180ms, max 181ms\n",
				"slow requests   10 ok, 0 failed (delay 1s); 10 still in flight when their upgrade returned\n",
				"latency         steady         p50 210µs, p99 1.1ms, max 3ms (3000 requests)\n",
				"                near upgrades  p50 300µs, p99 5ms, max 9ms (4000 requests)\n",
				"pids            101 (5000 requests), 102 (7345 requests)\n",
			}},
		{"fail", failing, true,
			"FAIL: 3 failed requests (2 eof, 1 non-200), 1 failed slow request, 1 failed upgrade across 10 upgrades (12345 requests)",
			[]string{
				"keepalive      6173        0      0    1        0        1      0\n",
				"all           12345        0      0    2        0        1      0\n",
				"statuses        503 ×1\n",
				"  upgrade 4: successor exited with status 1\n",
				"  slow request near upgrade 5: read response: EOF\n",
				"  keepalive eof: request 7 on connection: read response: EOF\n",
				"  keepalive non-200: status 503 Service Unavailable\n",
				"  fresh eof: read response: EOF\n",
			}},
		{"stopped", stopped, false,
			"INCOMPLETE: 0 failed requests across 3 of 10 upgrades (12345 requests); stopped: context canceled",
			[]string{"slow requests   none\n", "pids            none found in bodies\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := tc.rep.Failed(); got != tc.failed {
				t.Errorf("Failed() = %v, want %v", got, tc.failed)
			}
			if got := tc.rep.Verdict(); got != tc.verdict {
				t.Errorf("Verdict() =\n\t%s\nwant\n\t%s", got, tc.verdict)
			}
			var b bytes.Buffer
			if err := tc.rep.WriteText(&b); err != nil {
				t.Fatalf("WriteText: %v", err)
			}
			text := b.String()
			if !strings.HasSuffix(text, "\n"+tc.verdict+"\n") {
				t.Errorf("WriteText does not end with the verdict:\n%s", text)
			}
			for _, want := range tc.has {
				if !strings.Contains(text, want) {
					t.Errorf("WriteText lacks %q in:\n%s", want, text)
				}
			}
		})
	}
}

func TestFailuresExamplesBounded(t *testing.T) {
	t.Parallel()
	var a, b Failures
	for i := range 2 * ExamplesPerClass {
		a.add(fmt.Errorf("read response %d: %w", i, io.EOF))
		b.add(io.ErrUnexpectedEOF) // the same message every time
	}
	if n := len(b.Examples["eof"]); n != 1 {
		t.Errorf("kept %d copies of one eof message, want 1", n)
	}
	a.merge(&b)
	if a.EOF != 4*ExamplesPerClass || a.Total() != a.EOF {
		t.Errorf("after merge EOF = %d, Total = %d; want %d", a.EOF, a.Total(), 4*ExamplesPerClass)
	}
	if n := len(a.Examples["eof"]); n != ExamplesPerClass {
		t.Errorf("kept %d eof examples, want %d", n, ExamplesPerClass)
	}
}

func TestShort(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                          "0s",
		1234:                       "1µs",
		213456 * time.Nanosecond:   "213µs",
		1234567 * time.Nanosecond:  "1.23ms",
		123456789:                  "123ms",
		12345678901:                "12.3s",
		90*time.Second + 123456789: "1m30.1s",
	} {
		if got := short(d); got != want {
			t.Errorf("short(%d) = %q, want %q", d, got, want)
		}
	}
}

// Problems names everything that keeps a run from proving zero downtime,
// and nothing for a run that proves it.
func TestProblems(t *testing.T) {
	ok := func() *Report {
		return &Report{Upgrades: UpgradeReport{Planned: 3, OK: 3}, Slow: &SlowReport{OK: 3}}
	}
	if p := ok().Problems(); len(p) != 0 {
		t.Errorf("a clean run: %q, want none", p)
	}
	tests := []struct {
		name   string
		change func(*Report)
		want   string
	}{
		{"failed request", func(r *Report) { r.FailedRequests = 2 }, "FAIL:"},
		{"stopped early", func(r *Report) { r.Stopped = "context canceled"; r.Upgrades.OK = 1; r.Slow.OK = 1 }, "INCOMPLETE:"},
		{"failed upgrade", func(r *Report) {
			r.Upgrades.OK, r.Upgrades.Failed, r.Upgrades.Errors = 2, 1, []string{"upgrade 3: exit status 7"}
		}, "2 of 3 upgrades succeeded: upgrade 3: exit status 7"},
		{"slow request lost", func(r *Report) { r.Slow.OK = 2 }, "2 of 3 slow requests completed"},
	}
	for _, tc := range tests {
		r := ok()
		tc.change(r)
		p := r.Problems()
		if !strings.Contains(strings.Join(p, "\n"), tc.want) {
			t.Errorf("%s: %q, want one containing %q", tc.name, p, tc.want)
		}
	}
}
