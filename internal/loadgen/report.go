package loadgen

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Report is what a run saw. Its exported fields marshal to JSON as they are;
// durations are integer nanoseconds (fields ending in _ns).
type Report struct {
	URL            string       `json:"url"`
	Modes          []ModeReport `json:"modes"`
	Requests       int64        `json:"requests"`        // load requests in all modes
	FailedRequests int64        `json:"failed_requests"` // of which failed

	Upgrades UpgradeReport `json:"upgrades"`
	Slow     *SlowReport   `json:"slow,omitempty"` // nil: no slow requests

	// Steady is the latency of requests started during warmup, before
	// any upgrade; NearUpgrade of those started between an upgrade's start
	// and 500ms after its end. Only successful requests are timed.
	Steady      Latency `json:"steady_latency"`
	NearUpgrade Latency `json:"near_upgrade_latency"`

	// PIDs are the pid=<n> values found in successful bodies, in the
	// order they first appeared. Empty if the server puts none there.
	PIDs []PIDCount `json:"pids"`

	Elapsed time.Duration `json:"elapsed_ns"`

	// Stopped says why the run ended before all its upgrades, such as
	// "context canceled"; empty if it did not.
	Stopped string `json:"stopped,omitempty"`
}

// ModeReport is what the clients of one Mode saw.
type ModeReport struct {
	Mode     Mode     `json:"mode"`
	Clients  int      `json:"clients"`
	Requests int64    `json:"requests"`
	Failures Failures `json:"failures"`
	// Connections is how many connections the clients opened. A
	// keep-alive client opens one more each time the server closes its
	// connection (Connection: close, or an idle close): beyond one per
	// client, each is a reconnect.
	Connections int64 `json:"connections"`
}

// Reconnects is how many connections the clients of a keep-alive mode
// opened beyond their first: each one the server closed under them.
// Fresh clients open one per request by design: 0 for them.
func (m *ModeReport) Reconnects() int64 {
	if m.Mode == Fresh {
		return 0
	}
	return max(m.Connections-int64(m.Clients), 0)
}

// UpgradeReport is about the Upgrade calls and how long they took.
type UpgradeReport struct {
	Planned int           `json:"planned"`
	OK      int           `json:"ok"`
	Failed  int           `json:"failed"`
	Errors  []string      `json:"errors,omitempty"` // "upgrade 3: …", one per failed upgrade
	P50     time.Duration `json:"p50_ns"`
	P99     time.Duration `json:"p99_ns"`
	Max     time.Duration `json:"max_ns"`
}

// SlowReport is about the slow requests, one per upgrade.
type SlowReport struct {
	Delay  time.Duration `json:"delay_ns"`
	OK     int           `json:"ok"`
	Failed int           `json:"failed"`
	// Spanning counts the slow requests still in flight when their
	// Upgrade call returned. The others ended before the handover was
	// over and prove less: make SlowDelay longer than an upgrade.
	Spanning int      `json:"spanning"`
	Errors   []string `json:"errors,omitempty"` // "upgrade 3: …", one per failure
}

// Latency summarises the durations of a set of requests.
type Latency struct {
	Requests int64         `json:"requests"`
	P50      time.Duration `json:"p50_ns"`
	P99      time.Duration `json:"p99_ns"`
	Max      time.Duration `json:"max_ns"`
}

// PIDCount is one serving process seen in response bodies.
type PIDCount struct {
	PID       int           `json:"pid"`
	Requests  int64         `json:"requests"`
	FirstSeen time.Duration `json:"first_seen_ns"` // since the run began
}

// Failed reports whether anything failed: a request, a slow request or an
// upgrade.
func (r *Report) Failed() bool {
	return r.FailedRequests > 0 || r.Upgrades.Failed > 0 || (r.Slow != nil && r.Slow.Failed > 0)
}

// Problems lists what keeps the run from proving zero downtime: any
// failure (the Verdict), a run stopped early, an upgrade that did not
// succeed, a slow request that did not complete. None means the proof
// holds. Tests report each with t.Error.
func (r *Report) Problems() []string {
	var p []string
	if r.Failed() || r.Stopped != "" {
		p = append(p, r.Verdict())
	}
	if r.Upgrades.OK != r.Upgrades.Planned {
		msg := fmt.Sprintf("%d of %d upgrades succeeded", r.Upgrades.OK, r.Upgrades.Planned)
		if len(r.Upgrades.Errors) > 0 {
			msg += ": " + strings.Join(r.Upgrades.Errors, "; ")
		}
		p = append(p, msg)
	}
	if r.Slow != nil && r.Slow.OK != r.Upgrades.Planned {
		p = append(p, fmt.Sprintf("%d of %d slow requests completed", r.Slow.OK, r.Upgrades.Planned))
	}
	return p
}

// Verdict is the one-line summary that ends WriteText: it starts with
// "PASS:", "FAIL:" or, for a run stopped early without failures,
// "INCOMPLETE:".
func (r *Report) Verdict() string {
	across := strconv.Itoa(r.Upgrades.OK + r.Upgrades.Failed)
	if r.Stopped != "" {
		across += " of " + strconv.Itoa(r.Upgrades.Planned)
	}
	tail := fmt.Sprintf("across %s upgrades (%d requests)", across, r.Requests)
	if r.Stopped != "" {
		tail += "; stopped: " + r.Stopped
	}
	if !r.Failed() {
		word := "PASS"
		if r.Stopped != "" {
			word = "INCOMPLETE"
		}
		return word + ": 0 failed requests " + tail
	}
	var what []string
	if r.FailedRequests > 0 {
		var all Failures
		for _, m := range r.Modes {
			all.merge(&m.Failures)
		}
		var kinds []string
		for c := range numClasses {
			if n := *all.counter(c); n > 0 {
				kinds = append(kinds, fmt.Sprintf("%d %s", n, c))
			}
		}
		what = append(what, plural(r.FailedRequests, "failed request")+" ("+strings.Join(kinds, ", ")+")")
	}
	if r.Slow != nil && r.Slow.Failed > 0 {
		what = append(what, plural(int64(r.Slow.Failed), "failed slow request"))
	}
	if r.Upgrades.Failed > 0 {
		what = append(what, plural(int64(r.Upgrades.Failed), "failed upgrade"))
	}
	return "FAIL: " + strings.Join(what, ", ") + " " + tail
}

func plural(n int64, s string) string {
	if n == 1 {
		return "1 " + s
	}
	return strconv.FormatInt(n, 10) + " " + s + "s"
}

// WriteText writes a compact report for people, ending with the Verdict.
func (r *Report) WriteText(w io.Writer) error {
	var b bytes.Buffer
	clients := 0
	names := make([]string, len(r.Modes))
	for i, m := range r.Modes {
		names[i] = string(m.Mode)
		clients = max(clients, m.Clients)
	}
	fmt.Fprintf(&b, "%s  %s × %d clients  %d upgrades  %s\n\n",
		r.URL, strings.Join(names, "+"), clients, r.Upgrades.Planned, short(r.Elapsed))

	rows := [][]string{{"mode", "requests"}}
	for c := range numClasses {
		rows[0] = append(rows[0], c.String())
	}
	var all Failures
	for _, m := range r.Modes {
		all.merge(&m.Failures)
		rows = append(rows, failureRow(string(m.Mode), m.Requests, &m.Failures))
	}
	if len(r.Modes) > 1 {
		rows = append(rows, failureRow("all", r.Requests, &all))
	}
	writeTable(&b, rows)
	b.WriteString("\n")

	line := func(key, format string, args ...any) {
		fmt.Fprintf(&b, "%-15s %s\n", key, fmt.Sprintf(format, args...))
	}
	var conns []string
	for _, m := range r.Modes {
		if m.Mode != Fresh {
			conns = append(conns, fmt.Sprintf("%s %d opened by %d clients, %s", m.Mode, m.Connections, m.Clients, plural(m.Reconnects(), "reconnect")))
		}
	}
	if len(conns) > 0 {
		line("connections", "%s", strings.Join(conns, "; "))
	}
	u := r.Upgrades
	if u.OK+u.Failed == 0 {
		line("upgrades", "none done")
	} else {
		line("upgrades", "%d ok, %d failed; took p50 %s, p99 %s, max %s", u.OK, u.Failed, short(u.P50), short(u.P99), short(u.Max))
	}
	if s := r.Slow; s != nil {
		line("slow requests", "%d ok, %d failed (delay %s); %d still in flight when their upgrade returned",
			s.OK, s.Failed, short(s.Delay), s.Spanning)
	} else {
		line("slow requests", "none")
	}
	line("latency", "steady         %s", latencyText(r.Steady))
	line("", "near upgrades  %s", latencyText(r.NearUpgrade))
	if len(r.PIDs) == 0 {
		line("pids", "none found in bodies")
	}
	for i := 0; i < len(r.PIDs); i += 4 {
		var ps []string
		for _, p := range r.PIDs[i:min(i+4, len(r.PIDs))] {
			ps = append(ps, fmt.Sprintf("%d (%d requests)", p.PID, p.Requests))
		}
		key := ""
		if i == 0 {
			key = "pids"
		}
		line(key, "%s", strings.Join(ps, ", "))
	}
	if len(all.Statuses) > 0 {
		codes := make([]int, 0, len(all.Statuses))
		for code := range all.Statuses {
			codes = append(codes, code)
		}
		slices.Sort(codes)
		var ss []string
		for _, code := range codes {
			ss = append(ss, fmt.Sprintf("%d ×%d", code, all.Statuses[code]))
		}
		line("statuses", "%s", strings.Join(ss, ", "))
	}

	var errs []string
	errs = append(errs, u.Errors...)
	if r.Slow != nil {
		for _, e := range r.Slow.Errors {
			errs = append(errs, "slow request near "+e)
		}
	}
	for _, m := range r.Modes {
		for c := range numClasses {
			for _, e := range m.Failures.Examples[c.String()] {
				errs = append(errs, fmt.Sprintf("%s %s: %s", m.Mode, c, e))
			}
		}
	}
	if len(errs) > 0 {
		b.WriteString("\nerrors (examples):\n")
		for _, e := range errs {
			b.WriteString("  " + e + "\n")
		}
	}
	b.WriteString("\n" + r.Verdict() + "\n")
	_, err := w.Write(b.Bytes())
	return err
}

func latencyText(l Latency) string {
	if l.Requests == 0 {
		return "no requests"
	}
	return fmt.Sprintf("p50 %s, p99 %s, max %s (%d requests)", short(l.P50), short(l.P99), short(l.Max), l.Requests)
}

func failureRow(name string, requests int64, f *Failures) []string {
	row := []string{name, strconv.FormatInt(requests, 10)}
	for c := range numClasses {
		row = append(row, strconv.FormatInt(*f.counter(c), 10))
	}
	return row
}

// writeTable writes rows with the first column aligned left and the others,
// numbers, aligned right.
func writeTable(b *bytes.Buffer, rows [][]string) {
	var widths []int
	for _, row := range rows {
		for i, cell := range row {
			if i == len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(cell))
		}
	}
	for _, row := range rows {
		for i, cell := range row {
			switch {
			case i == 0:
				fmt.Fprintf(b, "%-*s", widths[i], cell)
			default:
				fmt.Fprintf(b, "  %*s", widths[i], cell)
			}
		}
		b.WriteString("\n")
	}
}

// short rounds d to about three significant digits for reading.
func short(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		d = d.Round(100 * time.Millisecond)
	case d >= 100*time.Millisecond:
		d = d.Round(time.Millisecond)
	case d >= time.Millisecond:
		d = d.Round(10 * time.Microsecond)
	case d >= time.Microsecond:
		d = d.Round(time.Microsecond)
	}
	return d.String()
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted by the
// nearest-rank method: the smallest value that at least p% of the values do
// not exceed. It is 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	k := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(k, 1), len(sorted))-1]
}

func latencyOf(ds []time.Duration) Latency {
	slices.Sort(ds)
	l := Latency{Requests: int64(len(ds))}
	if len(ds) > 0 {
		l.P50, l.P99, l.Max = percentile(ds, 50), percentile(ds, 99), ds[len(ds)-1]
	}
	return l
}

// tally is what one client saw; only that client touches it until it is
// handed back to run.
type tally struct {
	mode        Mode
	connections int64
	requests    int64
	failures    Failures
	samples     []sample
	pids        map[int]*PIDCount
}

// sample is one successful request, timed.
type sample struct {
	start time.Duration // since the run began
	took  time.Duration
}

func (t *tally) ok(start, took time.Duration, pid int) {
	t.samples = append(t.samples, sample{start, took})
	if pid == 0 {
		return
	}
	if t.pids == nil {
		t.pids = make(map[int]*PIDCount)
	}
	p := t.pids[pid]
	if p == nil {
		p = &PIDCount{PID: pid, FirstSeen: start}
		t.pids[pid] = p
	}
	p.Requests++
}

func (r *run) summarize(ts []*tally, ups []upgradeRecord, slows []slowResult, spanning int, warmupEnd time.Duration, stopped string) *Report {
	rep := &Report{URL: r.url.String(), Stopped: stopped}
	pids := make(map[int]*PIDCount)
	var steady, near []time.Duration
	for _, m := range r.modes {
		mr := ModeReport{Mode: m, Clients: r.clients}
		for _, t := range ts {
			if t.mode != m {
				continue
			}
			mr.Requests += t.requests
			mr.Connections += t.connections
			mr.Failures.merge(&t.failures)
			for _, s := range t.samples {
				if s.start < warmupEnd {
					steady = append(steady, s.took)
				}
				if isNear(ups, s.start) {
					near = append(near, s.took)
				}
			}
			for pid, p := range t.pids {
				q := pids[pid]
				if q == nil {
					q = &PIDCount{PID: pid, FirstSeen: p.FirstSeen}
					pids[pid] = q
				}
				q.Requests += p.Requests
				q.FirstSeen = min(q.FirstSeen, p.FirstSeen)
			}
		}
		rep.Modes = append(rep.Modes, mr)
		rep.Requests += mr.Requests
		rep.FailedRequests += mr.Failures.Total()
	}
	rep.Steady, rep.NearUpgrade = latencyOf(steady), latencyOf(near)
	for _, p := range pids {
		rep.PIDs = append(rep.PIDs, *p)
	}
	slices.SortFunc(rep.PIDs, func(a, b PIDCount) int {
		if a.FirstSeen != b.FirstSeen {
			return int(a.FirstSeen - b.FirstSeen)
		}
		return a.PID - b.PID
	})

	rep.Upgrades.Planned = r.upgrades
	took := make([]time.Duration, 0, len(ups))
	for i, u := range ups {
		took = append(took, u.end-u.start)
		if u.err != nil {
			rep.Upgrades.Failed++
			rep.Upgrades.Errors = append(rep.Upgrades.Errors, fmt.Sprintf("upgrade %d: %v", i+1, u.err))
		} else {
			rep.Upgrades.OK++
		}
	}
	l := latencyOf(took)
	rep.Upgrades.P50, rep.Upgrades.P99, rep.Upgrades.Max = l.P50, l.P99, l.Max

	if r.slowDelay >= 0 {
		rep.Slow = &SlowReport{Delay: r.slowDelay, Spanning: spanning}
		for _, s := range slows {
			if s.err != nil {
				rep.Slow.Failed++
				rep.Slow.Errors = append(rep.Slow.Errors, fmt.Sprintf("upgrade %d: %v", s.upgrade, s.err))
			} else {
				rep.Slow.OK++
			}
		}
	}
	rep.Elapsed = time.Since(r.t0)
	return rep
}

// isNear reports whether a request started at t started between an
// upgrade's start and nearUpgrade after its end. ups is in order and the
// upgrades did not overlap, so the last one started by t is the only one
// whose window can still be open.
func isNear(ups []upgradeRecord, t time.Duration) bool {
	i := sort.Search(len(ups), func(i int) bool { return ups[i].start > t })
	return i > 0 && t <= ups[i-1].end+nearUpgrade
}
