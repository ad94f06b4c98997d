package main

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sample is go test -bench output as the benchmark binary prints it, with
// the SKIP lines its stderr adds, cut down.
const sample = `goos: linux
goarch: amd64
pkg: github.com/batonhq/baton/bench
cpu: Intel(R) Xeon(R) Processor
BenchmarkIdle/lib=baton-2         	      10	   8830976 base-rss-bytes	    -15019 rss-bytes
BenchmarkIdle/lib=tableflip-2     	      10	   8824149 base-rss-bytes	    146091 rss-bytes
BenchmarkIdleMaster/cmd=baton-run-2         	      10	   8549717 master-rss-bytes	   8971605 worker-rss-bytes
BenchmarkHandoff/lib=baton/sockets=1-2         	      20	   2725434 ns/op	         1.000 fds/socket	   2000000 ns/upgrade
BenchmarkHandoff/lib=tableflip/sockets=1-2     	      20	   2575007 ns/op	         2.000 fds/socket	   2500000 ns/upgrade
BenchmarkHandoff/lib=baton/sockets=1000-2      	      20	  17390865 ns/op	         1.000 fds/socket	  13000000 ns/upgrade
BenchmarkHandoff/lib=tableflip/sockets=1000-2  	      20	  20645313 ns/op	         2.000 fds/socket	  16000000 ns/upgrade
BenchmarkHandoff/lib=baton/sockets=10000-2     	       5	 200000000 ns/op	         1.000 fds/socket	 150000000 ns/upgrade
SKIP BenchmarkHandoff/lib=tableflip/sockets=10000: 10000 sockets need about 30100 descriptors per process
--- BENCH: BenchmarkUpgradeUnderLoad/drain=httpdrain/lib=reuseport-2
    load_test.go:146: FAIL: 54 failed requests (54 reset) across 100 upgrades (251479 requests)
BenchmarkUpgradeUnderLoad/drain=httpdrain/lib=baton-2         	     100	         0 failed-slow	         0 failed-upgrades	         0 fresh-failed	     98694 fresh-requests	         0 keepalive-failed	    124075 keepalive-requests	   1034646 near-p50-ns	   8446918 near-p99-ns	  2997758 ns/upgrade	   1038943 steady-p50-ns	   5265696 steady-p99-ns	       100.0 upgrades
BenchmarkPausingClients/drain=idle/lib=baton-2         	      20	         0 failed-slow	         0 failed-upgrades	  12000000 drain-ns	   3000000 ns/upgrade	        36.00 pausing-connections	        12.00 pausing-eof	        12.00 pausing-failed	        20.00 pausing-reconnects	      1500 pausing-requests	        20.00 upgrades
BenchmarkPausingClients/drain=shutdown/lib=tableflip-2 	      20	         0 failed-slow	         0 failed-upgrades	 900000000 drain-ns	   3000000 ns/upgrade	       336.0 pausing-connections	       300.0 pausing-eof	         2.000 pausing-reset	       302.0 pausing-failed	       320.0 pausing-reconnects	      1400 pausing-requests	        20.00 upgrades
BenchmarkUpgradeUnderLoad/drain=httpdrain/lib=reuseport-2     	     100	         0 failed-slow	         0 failed-upgrades	        54.00 fresh-failed	    107841 fresh-requests	        54.00 fresh-reset	         0 keepalive-failed	    143638 keepalive-requests	   1044890 near-p50-ns	   4223459 near-p99-ns	  12121546 ns/upgrade	   1076046 steady-p50-ns	   8205732 steady-p99-ns	        99.00 upgrades	 1.000 failed-upgrades
BenchmarkDrain/drain=grpcdrain-2 	      20	1090848317 ns/op	         0 broken-streams	        50513 calls	       974.0 drain-ms	         0 failed-calls	         0 lost-msgs	        80.00 resumed	        88.00 streams	        20.00 upgrades
BenchmarkDrain/drain=plain-2     	      20	1118969437 ns/op	       160.0 broken-streams	        52544 calls	      1001 drain-ms	         1.000 failed-calls	      7840 lost-msgs	         0 resumed	       168.0 streams	        20.00 upgrades
BenchmarkUpgrades/route=on-2     	      20	 900000000 ns/op	         0 failed	        64.00 handshakes	         0 idle-timeouts	         2.400 p99-steady-ms	         3.600 p99-upgrade-ms	      5120 relayed	     13000 requests	         0 resets	        20.00 upgrades
BenchmarkUpgrades/route=off-2    	      20	 900000000 ns/op	       136.0 failed	       199.0 handshakes	        40.00 idle-timeouts	         2.500 p99-steady-ms	        50.00 p99-upgrade-ms	         0 relayed	     13670 requests	        12.00 resets	        20.00 upgrades
PASS
ok  	github.com/batonhq/baton/bench	33.086s
`

func TestParseLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		want result
		ok   bool
	}{
		{
			line: "BenchmarkHandoff/lib=baton/sockets=1000-2  20  17390865 ns/op  13000000 ns/upgrade",
			want: result{bench: "Handoff", params: map[string]string{"lib": "baton", "sockets": "1000"}, n: 20,
				metrics: map[string]float64{"ns/op": 17390865, "ns/upgrade": 13000000}},
			ok: true,
		},
		{
			// GOMAXPROCS 1: no suffix; a name with a dash in a value.
			line: "BenchmarkIdleMaster/cmd=baton-run  3  8549717 master-rss-bytes",
			want: result{bench: "IdleMaster", params: map[string]string{"cmd": "baton-run"}, n: 3,
				metrics: map[string]float64{"master-rss-bytes": 8549717}},
			ok: true,
		},
		{
			line: "BenchmarkIdle/lib=baton-2  10  -15019 rss-bytes",
			want: result{bench: "Idle", params: map[string]string{"lib": "baton"}, n: 10,
				metrics: map[string]float64{"rss-bytes": -15019}},
			ok: true,
		},
		{line: "PASS"},
		{line: "goos: linux"},
		{line: "--- BENCH: BenchmarkUpgradeUnderLoad/drain=httpdrain/lib=reuseport-2"},
		{line: "       0	               NaN ns/op"},
		{line: "BenchmarkHandoff/lib=baton-2  many  1 ns/op"},  // no iteration count
		{line: "BenchmarkHandoff/baton-2  20  1 ns/op"},        // a component without =
		{line: "BenchmarkHandoff/lib=baton-2  20  1 ns/op  2"}, // a value without unit
		{line: "BenchmarkHandoff/lib=baton-2  20  fast ns/op"}, // not a number
		{line: "ok  	github.com/batonhq/baton/bench	33.086s"},
	} {
		got, ok := parseLine(tc.line)
		if ok != tc.ok {
			t.Errorf("parseLine(%q): ok %v, want %v", tc.line, ok, tc.ok)
			continue
		}
		if ok && !reflect.DeepEqual(got, tc.want) {
			t.Errorf("parseLine(%q) = %+v, want %+v", tc.line, got, tc.want)
		}
	}
}

func TestParseBench(t *testing.T) {
	t.Parallel()
	rs, skips, err := parseBench(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 16 {
		t.Errorf("parseBench(sample): %d results, want 16", len(rs))
	}
	if want := []string{"BenchmarkHandoff/lib=tableflip/sockets=10000: 10000 sockets need about 30100 descriptors per process"}; !reflect.DeepEqual(skips, want) {
		t.Errorf("parseBench(sample): skips %q, want %q", skips, want)
	}
	h := find(rs, "Handoff", map[string]string{"lib": "baton"})
	if got := values(h, "ns/upgrade"); !reflect.DeepEqual(got, []float64{2e6, 13e6, 150e6}) {
		t.Errorf("ns/upgrade of Handoff lib=baton: %v, want [2e6 13e6 150e6]", got)
	}
	if got := values(h, "fds/socket"); !reflect.DeepEqual(got, []float64{1, 1, 1}) {
		t.Errorf("fds/socket of Handoff lib=baton: %v, want [1 1 1]", got)
	}
}

func TestSummarise(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []float64
		want summary
	}{
		{nil, summary{}},
		{[]float64{3}, summary{1, 3, 3, 3}},
		{[]float64{5, 1, 3}, summary{3, 3, 1, 5}},
		{[]float64{4, 1, 3, 2}, summary{4, 2.5, 1, 4}},
	} {
		if got := summarise(tc.in); got != tc.want {
			t.Errorf("summarise(%v) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func testPage(t *testing.T, others float64) *page {
	t.Helper()
	rs, skips, err := parseBench(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	var load, handoff, idle, pausing, grpc, http3 []result
	for _, r := range rs {
		switch r.bench {
		case "UpgradeUnderLoad":
			load = append(load, r)
		case "PausingClients":
			pausing = append(pausing, r)
		case "Handoff":
			handoff = append(handoff, r)
		case "Drain":
			grpc = append(grpc, r)
		case "Upgrades":
			http3 = append(http3, r)
		default:
			idle = append(idle, r)
		}
	}
	return &page{
		machine: machine{
			cpu: "Test CPU", cores: 2, memory: 4 << 30, kernel: "Linux 6.1", goVersion: "go1.26 linux/amd64",
			tableflip: "github.com/cloudflare/tableflip v1.2.3", commit: "abc123", dirty: true,
			date: time.Date(2026, 11, 21, 4, 0, 0, 0, time.UTC), nofileHard: 20000,
			loadStart: "3.00 2.00 1.00", loadEnd: "4.00 3.00 2.00", others: others,
		},
		build:   "go test -c -o bench.test .",
		command: "cd bench && go run ./cmd/results -o ../docs/RESULTS.md",
		took:    7 * time.Minute,
		runs: []benchRun{
			{what: "idle", cmd: "./bench.test -test.bench '^BenchmarkIdle'", results: idle, took: 5 * time.Second},
			{what: "handoff", cmd: "./bench.test -test.bench '^BenchmarkHandoff$'", results: handoff, skips: skips, took: time.Second},
			{what: "handoff", cmd: "./bench.test -test.bench '^BenchmarkHandoff$'", skips: skips, err: "exit status 1", took: time.Second},
			{what: "load", cmd: "./bench.test -test.bench '^BenchmarkUpgradeUnderLoad$'", results: load, took: time.Minute},
			{what: "pausing", cmd: "./bench.test -test.bench '^BenchmarkPausingClients$'", results: pausing, took: time.Minute},
			{what: "grpc", cmd: "(cd ../examples/grpc/server && ../grpc.test -test.bench '^BenchmarkDrain$')", results: grpc, took: time.Minute},
			{what: "http3", cmd: "(cd ../examples/http3/server && ../http3.test -test.bench '^BenchmarkUpgrades$')", results: http3, took: time.Minute},
		},
	}
}

func TestRender(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := render(&b, testPage(t, 0.5)); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Generated in 7m0s by `cd bench && go run ./cmd/results -o ../docs/RESULTS.md`\n",
		"> **Incomplete:** `./bench.test -test.bench '^BenchmarkHandoff$'` failed (exit status 1)",
		"| CPU | Test CPU, 2 cores |",
		"| baton | commit abc123 (with uncommitted changes) |",
		"| date | 2026-11-21 04:00 UTC |",
		"| load average | 3.00 2.00 1.00 at the start, 4.00 3.00 2.00 at the end |",
		"**Shared machine:** other processes used 50% of the CPU time",
		// Section 1: counts, per 100 upgrades, kinds, handoff under load.
		"| baton | 100 | 0 / 98,694 | 0.0 | 0 / 124,075 | 0.0 | none | 3.00 ms |",
		"| SO_REUSEPORT re-bind | 99 (1 failed) | 54 / 107,841 | 54.5 | 0 / 143,638 | 0.0 | fresh: 54 reset | 12.1 ms |",
		// Section 2: medians, ranges, ratio, descriptors per socket,
		// why a size is missing, growth.
		"| sockets | baton | tableflip | baton/tableflip | descriptors per socket, baton | tableflip |",
		"| 1 | 2.00 ms (2.00 ms–2.00 ms, n=1) | 2.50 ms (2.50 ms–2.50 ms, n=1) | 0.80 | 1.00 | 2.00 |",
		"| 1,000 | 13.0 ms (13.0 ms–13.0 ms, n=1) | 16.0 ms (16.0 ms–16.0 ms, n=1) | 0.81 | 1.00 | 2.00 |",
		"| 10,000 | 150 ms (150 ms–150 ms, n=1) | not measured | – | 1.00 | – |",
		"tableflip is not measured at 10,000 sockets: tableflip holds 2 descriptors per socket (its own copy beside the listener), and 3 while it starts a successor, and the hard RLIMIT_NOFILE here is 20,000",
		"Growth: baton 14.8 µs per socket (from 1 to 10,000); tableflip 13.5 µs per socket (from 1 to 1,000).",
		// Section 3: p99 steady and around upgrades, baton/server.
		"| baton | 1.04 ms | 1.03 ms | 5.27 ms | 8.45 ms | 1.60 | 1.00 |",
		"| SO_REUSEPORT re-bind | 1.08 ms | 1.04 ms | 8.21 ms | 4.22 ms | 0.51 | 2.00 |",
		// Section 4.
		"| plain `net.Listen`, no library | 8.4 MiB | – |",
		"| baton library user | 8.4 MiB | -15 KiB |",
		"| tableflip library user | 8.6 MiB | +143 KiB |",
		"| `baton run` master, idle with one worker | 8.2 MiB | – |",
		"baton/tableflip, library users: 0.98.",
		// Section 5: failures, per 100 upgrades, reconnects per upgrade.
		"| baton, httpdrain without handoff (IdleGrace 500 ms) | 20 | 12 / 1,500 | 60.0 | 1.0 | 12.0 ms | 12 eof |",
		"| tableflip, plain Shutdown | 20 | 302 / 1,400 | 1510.0 | 16.0 | 900 ms | 2 reset, 300 eof |",
		// Section 6: gRPC.
		"| 20 | 0 / 50,513 | 88 | 80 | 0 | 0 | 974 ms |",
		"| plain GracefulStop, Stop at the deadline | 20 | 1 / 52,544 | 168 | 0 | 160 | 7,840 | 1001 ms |",
		"(cd ../examples/grpc/server && ../grpc.test -test.bench '^BenchmarkDrain$')   # grpc, 1m0s",
		// Section 7: HTTP/3, with routing and without.
		"| quicroute: connection IDs name the generation, its datagrams relayed to it | 20 | 0 / 13,000 | 64 | 0 | 0 | 5,120 | 2.40 ms | 3.60 ms | 1.50 |",
		"| no routing: the old generation shuts down (quic-go servers today) | 20 | 136 / 13,670 | 199 | 40 | 12 | 0 | 2.50 ms | 50.0 ms | 20.00 |",
		"(cd ../examples/http3/server && ../http3.test -test.bench '^BenchmarkUpgrades$')   # http3, 1m0s",
		// Commands and skips, each skip once.
		"go test -c -o bench.test .\n./bench.test -test.bench '^BenchmarkIdle'   # idle, 5s\n",
		"- BenchmarkHandoff/lib=tableflip/sockets=10000: 10000 sockets need about 30100 descriptors per process\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("render: no %q in\n%s", want, out)
		}
	}
	if n := strings.Count(out, "sockets=10000:"); n != 1 {
		t.Errorf("render: the skip is listed %d times, want once", n)
	}
	if strings.Contains(out, "Drain: **plain") {
		t.Errorf("render: a table for the plain Shutdown drain, which the sample does not have")
	}

	b.Reset()
	if err := render(&b, testPage(t, 0.02)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "Shared machine") {
		t.Errorf("render with others at 2%%: says Shared machine")
	}
}

func TestRenderNothing(t *testing.T) {
	t.Parallel()
	var b bytes.Buffer
	if err := render(&b, &page{machine: machine{others: -1, loadStart: "0.10 0.10 0.10"}}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(b.String(), "Not measured."); n != 7 {
		t.Errorf("render of an empty page: %d sections say \"Not measured.\", want 7\n%s", n, b.String())
	}
}

func TestMachineShared(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		m    machine
		want bool
	}{
		{machine{cores: 2, others: 0.5}, true},
		{machine{cores: 2, others: 0.05}, false},
		{machine{cores: 2, others: -1, loadStart: "9.47 4.81 4.02"}, true},
		{machine{cores: 2, others: -1, loadStart: "0.02 0.10 0.20"}, false},
		{machine{cores: 2, others: -1, loadStart: "unknown"}, false},
	} {
		if got := tc.m.shared(); got != tc.want {
			t.Errorf("%+v.shared() = %v, want %v", tc.m, got, tc.want)
		}
	}
}

func TestParseStat(t *testing.T) {
	t.Parallel()
	stat := []byte("cpu  100 20 30 800 50 0 10 40 0 0\ncpu0 50 10 15 400 25 0 5 20 0 0\n")
	busy, total, ok := parseStat(stat)
	if !ok || math.Abs(busy-2) > 1e-9 || math.Abs(total-10.5) > 1e-9 {
		t.Errorf("parseStat: busy %v, total %v, ok %v; want 2, 10.5, true", busy, total, ok)
	}
	if _, _, ok := parseStat([]byte("intr 1 2 3\n")); ok {
		t.Errorf("parseStat without a cpu line: ok")
	}
}

func TestOthersShare(t *testing.T) {
	t.Parallel()
	a := cpuClock{busy: 10, total: 100, children: 1, ok: true}
	b := cpuClock{busy: 70, total: 200, children: 21, ok: true}
	// 60 s busy, of which 20 s ours, out of 100 s: 40 %.
	if got := othersShare(a, b); math.Abs(got-0.4) > 1e-9 {
		t.Errorf("othersShare = %v, want 0.4", got)
	}
	if got := othersShare(a, cpuClock{}); got != -1 {
		t.Errorf("othersShare with an unknown reading = %v, want -1", got)
	}
}

func TestProcParsers(t *testing.T) {
	t.Parallel()
	if got := cpuModel("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Processor\n"); got != "Intel(R) Xeon(R) Processor" {
		t.Errorf("cpuModel = %q", got)
	}
	if got := memTotal("MemTotal:       24684084 kB\nMemFree:        20656100 kB\n"); got != 24684084<<10 {
		t.Errorf("memTotal = %d, want %d", got, 24684084<<10)
	}
}

func TestFormat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ got, want string }{
		{count(0), "0"},
		{count(999), "999"},
		{count(1000), "1,000"},
		{count(1234567), "1,234,567"},
		{per100(54, 100), "54.0"},
		{per100(3, 20), "15.0"},
		{per100(3, 0), "–"},
		{ms(2.2e6), "2.20 ms"},
		{ms(13.4e6), "13.4 ms"},
		{ms(427.5e6), "428 ms"},
		{ratio(1, 0), "–"},
		{ratio(3, 4), "0.75"},
		{quoteArgs([]string{"-test.run", "^$", "-test.benchtime", "20x"}), "-test.run '^$' -test.benchtime 20x"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
}
