package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// page is everything docs/RESULTS.md says: where it was measured, what was
// run and what came out.
type page struct {
	machine machine
	build   string // the command that built the benchmark binary
	runs    []benchRun
	took    time.Duration // the whole regeneration
	command string        // what regenerates the page
}

// benchRun is one execution of the benchmark binary.
type benchRun struct {
	what    string // "load", "handoff" or "idle"
	cmd     string // the command line, as it can be typed in bench/
	results []result
	skips   []string
	err     string // why the command failed; empty if it did not
	took    time.Duration
}

// machine describes where the numbers were measured.
type machine struct {
	cpu        string
	cores      int
	memory     int64 // bytes
	kernel     string
	goVersion  string
	tableflip  string
	commit     string
	dirty      bool
	date       time.Time
	nofileHard uint64

	loadStart, loadEnd string // /proc/loadavg, first three fields
	// others is the share of the machine's CPU time that processes other
	// than this command and its children used while the benchmarks ran
	// (steal included); negative if unknown.
	others float64
}

// sharedThreshold is the share of CPU time used by others above which the
// page says the numbers were measured on a shared machine. A quiet machine
// stays far below it; a few other busy processes exceed it.
const sharedThreshold = 0.10

func (p *page) results(what string) []result {
	var out []result
	for _, r := range p.runs {
		if r.what == what {
			out = append(out, r.results...)
		}
	}
	return out
}

// render writes the page as Markdown.
func render(w io.Writer, p *page) error {
	var b strings.Builder
	b.WriteString("# baton against its peers: results\n\n")
	fmt.Fprintf(&b, "Generated in %s by `%s`\n", roundDuration(p.took), p.command)
	b.WriteString("(`make results` runs it with `-o ../docs/RESULTS.md`). Do not edit by hand: every\n")
	b.WriteString("number below was measured by the commands listed at the end, on the machine described\n")
	b.WriteString("here; bench/README.md says what each benchmark does and how.\n\n")
	for _, r := range p.runs {
		if r.err != "" {
			fmt.Fprintf(&b, "> **Incomplete:** `%s` failed (%s); its numbers are missing or partial.\n\n", r.cmd, r.err)
		}
	}
	renderMachine(&b, &p.machine)
	renderLoad(&b, p.results("load"))
	renderHandoff(&b, p.results("handoff"), p.machine.nofileHard)
	renderLatency(&b, p.results("load"))
	renderMemory(&b, p.results("idle"))
	renderPausing(&b, p.results("pausing"))
	renderGRPC(&b, p.results("grpc"))
	renderHTTP3(&b, p.results("http3"))
	renderCommands(&b, p)
	_, err := io.WriteString(w, b.String())
	return err
}

func renderMachine(b *strings.Builder, m *machine) {
	b.WriteString("## Machine\n\n")
	commit := m.commit
	if m.dirty {
		commit += " (with uncommitted changes)"
	}
	rows := [][]string{
		{"CPU", fmt.Sprintf("%s, %d cores", m.cpu, m.cores)},
		{"memory", fmt.Sprintf("%.1f GiB", float64(m.memory)/(1<<30))},
		{"kernel", m.kernel},
		{"Go", m.goVersion},
		{"baton", "commit " + commit},
		{"tableflip", m.tableflip},
		{"date", m.date.UTC().Format("2006-01-02 15:04 MST")},
		{"RLIMIT_NOFILE (hard)", strconv.FormatUint(m.nofileHard, 10)},
		{"load average", fmt.Sprintf("%s at the start, %s at the end", m.loadStart, m.loadEnd)},
	}
	if m.others >= 0 {
		rows = append(rows, []string{"CPU used by other processes", fmt.Sprintf("%.0f%% of the machine while the benchmarks ran", 100*m.others)})
	}
	table(b, []string{"", ""}, "ll", rows)
	if m.shared() {
		fmt.Fprintf(b, "\n**Shared machine:** other processes used %.0f%% of the CPU time (load average %s at the start). Expect noise, above all in latencies; compare ratios rather than absolute times, and regenerate on a quiet machine for numbers to quote.\n", 100*m.others, m.loadStart)
	}
	b.WriteString("\n")
}

// shared reports whether other processes took a noticeable share of the
// CPU, or, if that is unknown, whether the load average was high at the
// start.
func (m *machine) shared() bool {
	if m.others >= 0 {
		return m.others > sharedThreshold
	}
	f := strings.Fields(m.loadStart)
	if len(f) == 0 {
		return false
	}
	l, err := strconv.ParseFloat(f[0], 64)
	return err == nil && l > sharedThreshold*float64(max(m.cores, 1))
}

var serverNames = map[string]string{
	"baton":     "baton",
	"tableflip": "tableflip",
	"reuseport": "SO_REUSEPORT re-bind",
}

var drainNames = map[string]string{
	"httpdrain": "httpdrain (baton/httpdrain, IdleGrace 5 s, then Shutdown)",
	"shutdown":  "plain http.Server.Shutdown",
}

// loadOrder is the order of servers and drains in the tables.
var (
	loadServers = []string{"baton", "tableflip", "reuseport"}
	loadDrains  = []string{"httpdrain", "shutdown"}
	modes       = []string{"fresh", "keepalive"}
	classes     = []string{"refused", "reset", "eof", "timeout", "non200", "other"}
)

func renderLoad(b *strings.Builder, rs []result) {
	b.WriteString("## 1. Failed requests across upgrades under load\n\n")
	load := find(rs, "UpgradeUnderLoad", nil)
	if len(load) == 0 {
		b.WriteString("Not measured.\n\n")
		return
	}
	b.WriteString("One HTTP server per library, the same for all three: one listener, `net/http`, and a drain once the\n")
	b.WriteString("successor is ready. 16 clients that never retry in each mode, both modes at once: *fresh* opens a\n")
	b.WriteString("connection per request, *keep-alive* reuses one. A slow request is in flight across every upgrade.\n")
	b.WriteString("Failed requests are counted over the whole run and scaled to 100 upgrades. *Handoff* is the mean\n")
	b.WriteString("time of `Upgrade` (or, for the re-bind, from starting the successor to its ready) under this load.\n\n")
	b.WriteString("Two drains. **httpdrain** (package baton/httpdrain, which ends in `http.Server.Shutdown`; its\n")
	b.WriteString("IdleGrace raised to 5 s, so that clients starved of CPU on a busy machine are not taken for idle)\n")
	b.WriteString("loses no request of its own, so what fails there fails in the handoff. **Plain `Shutdown`** drops\n")
	b.WriteString("requests by itself, whatever the handoff: a request read after `Shutdown` began is dropped\n")
	b.WriteString("(golang/go#65802), and idle keep-alive connections are closed while a client's next request may\n")
	b.WriteString("be on its way; that table shows what a server gets with the drain most examples use.\n\n")
	for _, d := range loadDrains {
		ds := find(load, "UpgradeUnderLoad", map[string]string{"drain": d})
		if len(ds) == 0 {
			continue
		}
		fmt.Fprintf(b, "Drain: **%s**\n\n", drainNames[d])
		var rows [][]string
		for _, s := range loadServers {
			r := find(ds, "UpgradeUnderLoad", map[string]string{"lib": s})
			if len(r) == 0 {
				continue
			}
			ups, _ := sum(r, "upgrades")
			failedUps, _ := sum(r, "failed-upgrades")
			row := []string{serverNames[s], fmt.Sprintf("%.0f", ups)}
			if failedUps > 0 {
				row[1] += fmt.Sprintf(" (%.0f failed)", failedUps)
			}
			var kinds []string
			for _, m := range modes {
				failed, _ := sum(r, m+"-failed")
				reqs, _ := sum(r, m+"-requests")
				row = append(row, fmt.Sprintf("%s / %s", count(failed), count(reqs)), per100(failed, ups))
				var ks []string
				for _, c := range classes {
					if n, ok := sum(r, m+"-"+c); ok && n > 0 {
						ks = append(ks, fmt.Sprintf("%.0f %s", n, c))
					}
				}
				if len(ks) > 0 {
					kinds = append(kinds, m+": "+strings.Join(ks, ", "))
				}
			}
			if len(kinds) == 0 {
				kinds = []string{"none"}
			}
			row = append(row, strings.Join(kinds, "; "))
			if h, ok := sum(r, "ns/upgrade"); ok {
				row = append(row, ms(h))
			} else {
				row = append(row, "–")
			}
			rows = append(rows, row)
		}
		table(b, []string{"server", "upgrades", "fresh: failed / requests", "per 100 upgrades", "keep-alive: failed / requests", "per 100 upgrades", "kinds of failure", "handoff"}, "lrrrrrlr", rows)
		b.WriteString("\n")
	}
}

// per100 scales failed to 100 upgrades.
func per100(failed, upgrades float64) string {
	if upgrades == 0 {
		return "–"
	}
	return strconv.FormatFloat(failed*100/upgrades, 'f', 1, 64)
}

func count(v float64) string {
	s := strconv.FormatFloat(v, 'f', 0, 64)
	// Thousands separated by commas, for reading.
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// renderHandoff writes section 2; nofileHard is the machine's hard
// RLIMIT_NOFILE, which decides the largest size each library can hand over.
func renderHandoff(b *strings.Builder, rs []result, nofileHard uint64) {
	b.WriteString("## 2. Handoff latency and its growth with the number of sockets\n\n")
	hs := find(rs, "Handoff", nil)
	if len(hs) == 0 {
		b.WriteString("Not measured.\n\n")
		return
	}
	b.WriteString("From just before `Upgrade` to its return with the successor ready (it has taken over every\n")
	b.WriteString("socket by name and called `Ready`), mean over the upgrades of one run; the table gives the median\n")
	b.WriteString("of the runs and, in brackets, their range. *Descriptors per socket*: how many of a ready\n")
	b.WriteString("generation's descriptors refer to its sockets, per socket (the application's listener and any copy\n")
	b.WriteString("the library keeps), mean over the generations; it decides how many sockets fit under the\n")
	b.WriteString("descriptor limit.\n\n")
	var sizes []int
	for _, r := range hs {
		n, err := strconv.Atoi(r.params["sockets"])
		if err == nil && !slices.Contains(sizes, n) {
			sizes = append(sizes, n)
		}
	}
	slices.Sort(sizes)
	med := map[string]map[int]float64{}
	missing := map[string][]string{}
	var rows [][]string
	for _, n := range sizes {
		row := []string{count(float64(n))}
		var m [2]float64
		var fds [2]string
		for i, lib := range []string{"baton", "tableflip"} {
			rs := find(hs, "Handoff", map[string]string{"lib": lib, "sockets": strconv.Itoa(n)})
			fds[i] = "–"
			if f := summarise(values(rs, "fds/socket")); f.n > 0 {
				fds[i] = fmt.Sprintf("%.2f", f.median)
			}
			s := summarise(values(rs, "ns/upgrade"))
			if s.n == 0 {
				row = append(row, "not measured")
				missing[lib] = append(missing[lib], count(float64(n)))
				continue
			}
			m[i] = s.median
			if med[lib] == nil {
				med[lib] = map[int]float64{}
			}
			med[lib][n] = s.median
			row = append(row, fmt.Sprintf("%s (%s–%s, n=%d)", ms(s.median), ms(s.min), ms(s.max), s.n))
		}
		row = append(row, ratio(m[0], m[1]), fds[0], fds[1])
		rows = append(rows, row)
	}
	table(b, []string{"sockets", "baton", "tableflip", "baton/tableflip", "descriptors per socket, baton", "tableflip"}, "rrrrrr", rows)
	for _, lib := range []string{"baton", "tableflip"} {
		if len(missing[lib]) == 0 {
			continue
		}
		fmt.Fprintf(b, "\n%s is not measured at %s sockets: %s, and the hard RLIMIT_NOFILE here is %s, which this\n",
			lib, strings.Join(missing[lib], ", "), libDescriptors[lib], count(float64(nofileHard)))
		b.WriteString("process may not raise (that needs CAP_SYS_RESOURCE); the list at the end says what each size needs.\n")
	}
	if len(sizes) > 1 {
		lo, hi := sizes[0], sizes[len(sizes)-1]
		var per []string
		for _, lib := range []string{"baton", "tableflip"} {
			hiLib := hi
			for hiLib > lo && med[lib][hiLib] == 0 {
				hiLib = largestBelow(sizes, hiLib)
			}
			if hiLib > lo && med[lib][lo] > 0 {
				per = append(per, fmt.Sprintf("%s %.1f µs per socket (from %s to %s)", lib,
					(med[lib][hiLib]-med[lib][lo])/float64(hiLib-lo)/1e3, count(float64(lo)), count(float64(hiLib))))
			}
		}
		if len(per) > 0 {
			fmt.Fprintf(b, "\nGrowth: %s.\n", strings.Join(per, "; "))
		}
	}
	b.WriteString("\n")
}

// libDescriptors says what each library costs in descriptors, for a size
// the page cannot show.
var libDescriptors = map[string]string{
	"baton":     "baton holds 1 descriptor per socket, also while it sends them",
	"tableflip": "tableflip holds 2 descriptors per socket (its own copy beside the listener), and 3 while it starts a successor",
}

func largestBelow(sizes []int, n int) int {
	best := sizes[0]
	for _, s := range sizes {
		if s < n {
			best = max(best, s)
		}
	}
	return best
}

// ms formats nanoseconds as milliseconds with three significant digits.
func ms(ns float64) string {
	v := ns / 1e6
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f ms", v)
	case v >= 10:
		return fmt.Sprintf("%.1f ms", v)
	}
	return fmt.Sprintf("%.2f ms", v)
}

// ratio is a/b with two decimals, or a dash when either is missing.
func ratio(a, b float64) string {
	if a == 0 || b == 0 || math.IsNaN(a/b) {
		return "–"
	}
	return fmt.Sprintf("%.2f", a/b)
}

func renderLatency(b *strings.Builder, rs []result) {
	b.WriteString("## 3. Request latency around upgrades against steady state\n\n")
	load := find(rs, "UpgradeUnderLoad", nil)
	if len(load) == 0 {
		b.WriteString("Not measured.\n\n")
		return
	}
	b.WriteString("The same runs as section 1, successful requests of both modes. *Steady*: requests started in\n")
	b.WriteString("the two seconds of load before the first upgrade. *Around upgrades*: requests started between an\n")
	b.WriteString("upgrade's start (SIGHUP) and 500 ms after the new generation served; upgrades come about every\n")
	b.WriteString("0.4 s, so that is nearly every request after the first. The last column compares baton's p99\n")
	b.WriteString("around upgrades with each server's.\n\n")
	for _, d := range loadDrains {
		ds := find(load, "UpgradeUnderLoad", map[string]string{"drain": d})
		if len(ds) == 0 {
			continue
		}
		fmt.Fprintf(b, "Drain: **%s**\n\n", drainNames[d])
		batonNear, _ := sum(find(ds, "UpgradeUnderLoad", map[string]string{"lib": "baton"}), "near-p99-ns")
		var rows [][]string
		for _, s := range loadServers {
			r := find(ds, "UpgradeUnderLoad", map[string]string{"lib": s})
			if len(r) == 0 {
				continue
			}
			steady, _ := sum(r, "steady-p99-ns")
			near, _ := sum(r, "near-p99-ns")
			steady50, _ := sum(r, "steady-p50-ns")
			near50, _ := sum(r, "near-p50-ns")
			rows = append(rows, []string{serverNames[s], ms(steady50), ms(near50), ms(steady), ms(near), ratio(near, steady), ratio(batonNear, near)})
		}
		table(b, []string{"server", "p50 steady", "p50 around upgrades", "p99 steady", "p99 around upgrades", "p99 around/steady", "baton/server, p99 around"}, "lrrrrrr", rows)
		b.WriteString("\n")
	}
}

func renderMemory(b *strings.Builder, rs []result) {
	b.WriteString("## 4. Memory\n\n")
	idle := find(rs, "Idle", nil)
	master := find(rs, "IdleMaster", nil)
	if len(idle) == 0 && len(master) == 0 {
		b.WriteString("Not measured.\n\n")
		return
	}
	b.WriteString("VmRSS of idle processes. The library users are the same binary (the benchmark's helper), idle\n")
	b.WriteString("after `New` + `Listen` + `Ready`, or after a plain `net.Listen`, so only what a library touches\n")
	b.WriteString("differs; each is the mean over the iterations. The master is `baton run --listen tcp://127.0.0.1:0`\n")
	b.WriteString("with one worker (that helper, with baton), idle.\n\n")
	var rows [][]string
	base, hasBase := mean(idle, "base-rss-bytes")
	if hasBase {
		rows = append(rows, []string{"plain `net.Listen`, no library", mib(base), "–"})
	}
	abs := map[string]float64{}
	for _, lib := range []string{"baton", "tableflip"} {
		r := find(idle, "Idle", map[string]string{"lib": lib})
		extra, ok := mean(r, "rss-bytes")
		b0, ok0 := mean(r, "base-rss-bytes")
		if !ok || !ok0 {
			continue
		}
		abs[lib] = b0 + extra
		rows = append(rows, []string{lib + " library user", mib(b0 + extra), fmt.Sprintf("%+.0f KiB", extra/1024)})
	}
	if m, ok := mean(master, "master-rss-bytes"); ok {
		rows = append(rows, []string{"`baton run` master, idle with one worker", mib(m), "–"})
	}
	if w, ok := mean(master, "worker-rss-bytes"); ok {
		rows = append(rows, []string{"its worker (baton library user)", mib(w), "–"})
	}
	table(b, []string{"process", "VmRSS", "vs plain, same run"}, "lrr", rows)
	if abs["baton"] > 0 && abs["tableflip"] > 0 {
		fmt.Fprintf(b, "\nbaton/tableflip, library users: %s.", ratio(abs["baton"], abs["tableflip"]))
	}
	b.WriteString(" The difference from the plain helper swings by a few hundred KiB between processes:\n")
	b.WriteString("a library's own cost is below what this measures unless it exceeds that.\n\n")
}

// mean averages metric over rs.
func mean(rs []result, metric string) (float64, bool) {
	vs := values(rs, metric)
	if len(vs) == 0 {
		return 0, false
	}
	var t float64
	for _, v := range vs {
		t += v
	}
	return t / float64(len(vs)), true
}

func mib(bytes float64) string { return fmt.Sprintf("%.1f MiB", bytes/(1<<20)) }

func renderCommands(b *strings.Builder, p *page) {
	b.WriteString("## How these numbers were made\n\n")
	fmt.Fprintf(b, "`%s` ran these commands in `bench/` (`bench.test` was built in a temporary directory):\n\n", p.command)
	b.WriteString("```sh\n")
	b.WriteString(p.build + "\n")
	for _, r := range p.runs {
		fmt.Fprintf(b, "%s   # %s, %s\n", r.cmd, r.what, roundDuration(r.took))
	}
	b.WriteString("```\n")
	var skips []string
	for _, r := range p.runs {
		skips = append(skips, r.skips...)
	}
	if len(skips) > 0 {
		b.WriteString("\nNot measured here:\n\n")
		slices.Sort(skips)
		for _, s := range slices.Compact(skips) {
			fmt.Fprintf(b, "- %s\n", s)
		}
	}
}

func roundDuration(d time.Duration) string {
	if d >= time.Minute {
		return d.Round(time.Second).String()
	}
	return d.Round(100 * time.Millisecond).String()
}

// table writes a Markdown table; align has one letter per column, l or r.
func table(b *strings.Builder, head []string, align string, rows [][]string) {
	b.WriteString("| " + strings.Join(head, " | ") + " |\n|")
	for i := range head {
		if i < len(align) && align[i] == 'r' {
			b.WriteString("---:|")
		} else {
			b.WriteString("---|")
		}
	}
	b.WriteString("\n")
	for _, r := range rows {
		b.WriteString("| " + strings.Join(r, " | ") + " |\n")
	}
}

// pausingServers are the rows of section 5, as drain and lib.
var pausingServers = [][2]string{{"handoff", "baton"}, {"idle", "baton"}, {"shutdown", "tableflip"}}

var pausingNames = map[string]string{
	"handoff/baton":      "baton, httpdrain handing connections over",
	"idle/baton":         "baton, httpdrain without handoff (IdleGrace 500 ms)",
	"shutdown/tableflip": "tableflip, plain Shutdown",
}

// renderPausing writes section 5: keep-alive clients that pause.
func renderPausing(b *strings.Builder, rs []result) {
	b.WriteString("## 5. Keep-alive clients that pause between requests\n\n")
	ps := find(rs, "PausingClients", nil)
	if len(ps) == 0 {
		b.WriteString("Not measured.\n\n")
		return
	}
	b.WriteString("16 keep-alive clients POST (a request a client may not retry) and pause for a random time of up to\n")
	b.WriteString("1 s — twice httpdrain's default IdleGrace — between requests, never retrying: the traffic of a\n")
	b.WriteString("connection pool behind a proxy. A draining server that closes a connection it takes for idle\n")
	b.WriteString("races the client's next request. *Reconnects* are the connections the clients had to open again\n")
	b.WriteString("because the server closed theirs. *Drain*: how long an old generation ran on after its upgrade\n")
	b.WriteString("returned, mean over the upgrades; a slow request (250 ms) started before each upgrade is in flight\n")
	b.WriteString("on it, so no drain can be shorter than what is left of that request.\n\n")
	var rows [][]string
	for _, s := range pausingServers {
		r := find(ps, "PausingClients", map[string]string{"drain": s[0], "lib": s[1]})
		if len(r) == 0 {
			continue
		}
		ups, _ := sum(r, "upgrades")
		failed, _ := sum(r, "pausing-failed")
		reqs, _ := sum(r, "pausing-requests")
		reconnects, _ := sum(r, "pausing-reconnects")
		var ks []string
		for _, c := range classes {
			if n, ok := sum(r, "pausing-"+c); ok && n > 0 {
				ks = append(ks, fmt.Sprintf("%.0f %s", n, c))
			}
		}
		if len(ks) == 0 {
			ks = []string{"none"}
		}
		perUpgrade := "–"
		if ups > 0 {
			perUpgrade = strconv.FormatFloat(reconnects/ups, 'f', 1, 64)
		}
		drain := "–"
		if d, ok := mean(r, "drain-ns"); ok {
			drain = ms(d)
		}
		rows = append(rows, []string{pausingNames[s[0]+"/"+s[1]], fmt.Sprintf("%.0f", ups),
			fmt.Sprintf("%s / %s", count(failed), count(reqs)), per100(failed, ups), perUpgrade, drain, strings.Join(ks, ", ")})
	}
	table(b, []string{"server", "upgrades", "failed / requests", "per 100 upgrades", "reconnects per upgrade", "old generation's drain", "kinds of failure"}, "lrrrrrl", rows)
	b.WriteString("\n")
}

// grpcDrains are the rows of section 6, as their drain parameter.
var grpcDrains = []struct{ drain, name string }{
	{"grpcdrain", "grpcdrain (health NOT_SERVING, GOAWAY; at the deadline streams end with a status to resume from)"},
	{"plain", "plain GracefulStop, Stop at the deadline"},
}

// renderGRPC writes section 6: a gRPC server's unary calls and long
// streams through upgrades (examples/grpc, BenchmarkDrain).
func renderGRPC(b *strings.Builder, rs []result) {
	b.WriteString("## 6. gRPC: unary calls and long streams through upgrades\n\n")
	ds := find(rs, "Drain", nil)
	if len(ds) == 0 {
		b.WriteString("Not measured.\n\n")
		return
	}
	b.WriteString("The gRPC example (examples/grpc) on baton, upgraded by SIGHUP while 16 clients make unary calls\n")
	b.WriteString("(4 of them on a new connection each) and 8 clients run server-streaming calls of 2 s that\n")
	b.WriteString("cross the upgrades; a drain deadline of 1 s; clients never retry (grpc-go's transparent retry\n")
	b.WriteString("of calls the server never processed stays: it is part of the protocol). A stream ended by the\n")
	b.WriteString("drain is *resumed* when its status says where to resume from, and the client goes on from there;\n")
	b.WriteString("otherwise it is *broken* and the messages it had still to send are *lost*.\n\n")
	var rows [][]string
	for _, d := range grpcDrains {
		r := find(ds, "Drain", map[string]string{"drain": d.drain})
		if len(r) == 0 {
			continue
		}
		ups, _ := sum(r, "upgrades")
		calls, _ := sum(r, "calls")
		failed, _ := sum(r, "failed-calls")
		streams, _ := sum(r, "streams")
		broken, _ := sum(r, "broken-streams")
		lost, _ := sum(r, "lost-msgs")
		resumed, _ := sum(r, "resumed")
		drain := "–"
		if v, ok := mean(r, "drain-ms"); ok {
			drain = fmt.Sprintf("%.0f ms", v)
		}
		rows = append(rows, []string{d.name, fmt.Sprintf("%.0f", ups), fmt.Sprintf("%s / %s", count(failed), count(calls)),
			count(streams), count(resumed), count(broken), count(lost), drain})
	}
	table(b, []string{"drain", "upgrades", "failed / unary calls", "streams", "resumed", "broken", "messages lost", "mean drain"}, "lrrrrrrr", rows)
	b.WriteString("\n")
}

// http3Routes are the rows of section 7, as their route parameter.
var http3Routes = []struct{ route, name string }{
	{"on", "quicroute: connection IDs name the generation, its datagrams relayed to it"},
	{"off", "no routing: the old generation shuts down (quic-go servers today)"},
}

// renderHTTP3 writes section 7: HTTP/3 clients on long-lived QUIC
// connections through upgrades (examples/http3, BenchmarkUpgrades).
func renderHTTP3(b *strings.Builder, rs []result) {
	b.WriteString("## 7. HTTP/3: long-lived QUIC connections through upgrades\n\n")
	us := find(rs, "Upgrades", nil)
	if len(us) == 0 {
		b.WriteString("Not measured.\n\n")
		return
	}
	b.WriteString("The HTTP/3 example (examples/http3, quic-go) on baton, upgraded by SIGHUP while 32 clients, each\n")
	b.WriteString("on one long-lived QUIC connection, make requests (a quarter of them slow, so that requests cross\n")
	b.WriteString("every upgrade); clients never retry. With routing, each generation's connection IDs name it, and\n")
	b.WriteString("the generation that reads a datagram of an older one's connection relays it there, over the\n")
	b.WriteString("link between generations; the old generation sends GOAWAY and closes each connection with\n")
	b.WriteString("H3_NO_ERROR once its requests are done. Without it, a connection whose datagrams reach the\n")
	b.WriteString("wrong generation ends by an idle timeout or a stateless reset. *p99* is the latency of fast\n")
	b.WriteString("requests in steady state and during upgrades (from the SIGHUP until every client has been\n")
	b.WriteString("answered by the new generation, each client's new handshake included): the difference is what\n")
	b.WriteString("an upgrade costs a client, the relay's hop among it.\n\n")
	var rows [][]string
	for _, r := range http3Routes {
		res := find(us, "Upgrades", map[string]string{"route": r.route})
		if len(res) == 0 {
			continue
		}
		ups, _ := sum(res, "upgrades")
		reqs, _ := sum(res, "requests")
		failed, _ := sum(res, "failed")
		hs, _ := sum(res, "handshakes")
		idle, _ := sum(res, "idle-timeouts")
		resets, _ := sum(res, "resets")
		relayed, _ := sum(res, "relayed")
		steady, upgrade, ratio := "–", "–", "–"
		s, okS := mean(res, "p99-steady-ms")
		u, okU := mean(res, "p99-upgrade-ms")
		if okS {
			steady = ms(s * 1e6)
		}
		if okU {
			upgrade = ms(u * 1e6)
		}
		if okS && okU && s > 0 {
			ratio = fmt.Sprintf("%.2f", u/s)
		}
		rows = append(rows, []string{r.name, fmt.Sprintf("%.0f", ups), fmt.Sprintf("%s / %s", count(failed), count(reqs)),
			count(hs), count(idle), count(resets), count(relayed), steady, upgrade, ratio})
	}
	table(b, []string{"routing", "upgrades", "failed / requests", "QUIC handshakes", "idle timeouts", "stateless resets", "datagrams relayed", "p99 steady", "p99 during upgrades", "during/steady"}, "lrrrrrrrrr", rows)
	b.WriteString("\n")
}
