package supervisor

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// parsedMetrics is what parseExposition read: each family's type, and
// each sample by its series (name and labels as written).
type parsedMetrics struct {
	types   map[string]string
	samples map[string]float64
	labels  map[string]map[string]string // by series: the label values, unescaped
}

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

// parseExposition is a strict reader of the text exposition format 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): every
// line a HELP, a TYPE or a sample; HELP and TYPE at most once per family
// and before its samples; a family's samples together; names and label
// names valid, label values escaped with only \\, \" and \n; values Go
// floats or +Inf, -Inf, NaN; no series twice; counters named _total;
// histograms with ascending le, cumulative buckets, a +Inf bucket equal to
// _count, and a _sum. And for baton: every name baton_*.
func parseExposition(text string) (*parsedMetrics, error) {
	p := &parsedMetrics{types: map[string]string{}, samples: map[string]float64{}, labels: map[string]map[string]string{}}
	if text != "" && !strings.HasSuffix(text, "\n") {
		return nil, errors.New("the last line does not end with a line feed")
	}
	helps := map[string]bool{}
	done := map[string]bool{} // families whose samples are over
	current := ""
	type hist struct {
		les     []float64
		counts  []float64
		sum     bool
		count   float64
		hasCnt  bool
		hasInf  bool
		infCnt  float64
		started bool
	}
	hists := map[string]*hist{}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		fail := func(format string, a ...any) error {
			return fmt.Errorf("line %d %q: %s", i+1, line, fmt.Sprintf(format, a...))
		}
		if strings.HasPrefix(line, "#") {
			f := strings.SplitN(line, " ", 4)
			if len(f) < 3 || f[0] != "#" || (f[1] != "HELP" && f[1] != "TYPE") {
				continue // a plain comment
			}
			name := f[2]
			if !metricNameRE.MatchString(name) {
				return nil, fail("bad metric name %q", name)
			}
			if done[name] || (current == name && p.types[name] != "" && f[1] == "TYPE") {
				return nil, fail("%s after the family's samples or twice", f[1])
			}
			switch f[1] {
			case "HELP":
				if helps[name] {
					return nil, fail("HELP twice")
				}
				helps[name] = true
				if len(f) == 4 {
					if err := checkEscapes(f[3], false); err != nil {
						return nil, fail("HELP text: %v", err)
					}
				}
			case "TYPE":
				if len(f) != 4 {
					return nil, fail("TYPE without a type")
				}
				if _, ok := p.types[name]; ok {
					return nil, fail("TYPE twice")
				}
				switch f[3] {
				case "counter", "gauge", "histogram", "summary", "untyped":
				default:
					return nil, fail("unknown type %q", f[3])
				}
				p.types[name] = f[3]
				if f[3] == "counter" && !strings.HasSuffix(name, "_total") {
					return nil, fail("a counter not named _total")
				}
				if f[3] == "histogram" {
					hists[name] = &hist{}
				}
			}
			if current != "" && current != name {
				done[current] = true
			}
			current = name
			continue
		}
		if line == "" {
			return nil, fail("empty line")
		}
		name, ls, rest, err := splitSample(line)
		if err != nil {
			return nil, fail("%v", err)
		}
		if !strings.HasPrefix(name, "baton_") {
			return nil, fail("not a baton_ metric")
		}
		family, suffix := name, ""
		for _, s := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, s); ok && p.types[base] == "histogram" {
				family, suffix = base, s
			}
		}
		if _, ok := p.types[family]; !ok {
			return nil, fail("a sample before its TYPE")
		}
		if done[family] || family != current {
			return nil, fail("a sample away from its family's")
		}
		fields := strings.Fields(rest)
		if len(fields) < 1 || len(fields) > 2 || rest[0] != ' ' {
			return nil, fail("want one value and perhaps a timestamp")
		}
		v, err := parseValue(fields[0])
		if err != nil {
			return nil, fail("%v", err)
		}
		if len(fields) == 2 {
			if _, err := strconv.ParseInt(fields[1], 10, 64); err != nil {
				return nil, fail("timestamp: %v", err)
			}
		}
		series := line[:len(line)-len(rest)]
		if _, dup := p.samples[series]; dup {
			return nil, fail("the same series twice")
		}
		p.samples[series] = v
		p.labels[series] = ls
		if p.types[family] == "counter" && (v < 0 || math.IsNaN(v)) {
			return nil, fail("a counter below 0")
		}
		if h := hists[family]; h != nil {
			switch suffix {
			case "_bucket":
				le, ok := ls["le"]
				if !ok {
					return nil, fail("a bucket without le")
				}
				b, err := parseValue(le)
				if err != nil {
					return nil, fail("le: %v", err)
				}
				if n := len(h.les); n > 0 && (b <= h.les[n-1] || v < h.counts[n-1]) {
					return nil, fail("buckets not ascending or not cumulative")
				}
				h.les, h.counts = append(h.les, b), append(h.counts, v)
				if math.IsInf(b, 1) {
					h.hasInf, h.infCnt = true, v
				}
			case "_sum":
				h.sum = true
			case "_count":
				h.hasCnt, h.count = true, v
			default:
				return nil, fail("a histogram sample neither _bucket, _sum nor _count")
			}
		}
	}
	for name, h := range hists {
		if !h.hasInf || !h.hasCnt || !h.sum || h.infCnt != h.count {
			return nil, fmt.Errorf("histogram %s: +Inf bucket %v (%v), _count %v (%v), _sum %v: want all, +Inf equal to _count", name, h.hasInf, h.infCnt, h.hasCnt, h.count, h.sum)
		}
	}
	return p, nil
}

// splitSample splits a sample line into its name, its labels (unescaped)
// and the rest: " VALUE [TIMESTAMP]".
func splitSample(line string) (name string, ls map[string]string, rest string, err error) {
	end := strings.IndexAny(line, "{ ")
	if end < 0 {
		return "", nil, "", errors.New("no value")
	}
	name, rest = line[:end], line[end:]
	if !metricNameRE.MatchString(name) {
		return "", nil, "", fmt.Errorf("bad metric name %q", name)
	}
	ls = map[string]string{}
	if rest[0] != '{' {
		return name, ls, rest, nil
	}
	rest = rest[1:]
	for {
		if strings.HasPrefix(rest, "}") {
			return name, ls, rest[1:], nil
		}
		eq := strings.Index(rest, `="`)
		if eq < 0 {
			return "", nil, "", errors.New(`a label without ="`)
		}
		ln := rest[:eq]
		if !labelNameRE.MatchString(ln) || strings.HasPrefix(ln, "__") {
			return "", nil, "", fmt.Errorf("bad label name %q", ln)
		}
		if _, dup := ls[ln]; dup {
			return "", nil, "", fmt.Errorf("label %q twice", ln)
		}
		rest = rest[eq+2:]
		var b strings.Builder
		closed := false
		for len(rest) > 0 && !closed {
			c := rest[0]
			rest = rest[1:]
			switch c {
			case '\\':
				if rest == "" {
					return "", nil, "", errors.New("a backslash at the end")
				}
				switch rest[0] {
				case '\\':
					b.WriteByte('\\')
				case '"':
					b.WriteByte('"')
				case 'n':
					b.WriteByte('\n')
				default:
					return "", nil, "", fmt.Errorf(`bad escape \%c`, rest[0])
				}
				rest = rest[1:]
			case '"':
				closed = true
			case '\n':
				return "", nil, "", errors.New("a raw line feed in a label value")
			default:
				b.WriteByte(c)
			}
		}
		if !closed {
			return "", nil, "", errors.New("an unterminated label value")
		}
		ls[ln] = b.String()
		switch {
		case strings.HasPrefix(rest, ","):
			rest = rest[1:]
		case strings.HasPrefix(rest, "}"):
		default:
			return "", nil, "", errors.New("labels not separated by commas")
		}
	}
}

// checkEscapes wants only \\ and \n escapes in s (and \" if quote).
func checkEscapes(s string, quote bool) error {
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			continue
		}
		if i+1 == len(s) {
			return errors.New("a backslash at the end")
		}
		i++
		if s[i] != '\\' && s[i] != 'n' && !(quote && s[i] == '"') {
			return fmt.Errorf(`bad escape \%c`, s[i])
		}
	}
	return nil
}

func parseValue(s string) (float64, error) {
	switch s {
	case "+Inf":
		return math.Inf(1), nil
	case "-Inf":
		return math.Inf(-1), nil
	case "NaN":
		return math.NaN(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || strings.ContainsAny(s, "_xXpP") || strings.EqualFold(s, "inf") || strings.EqualFold(s, "infinity") {
		return 0, fmt.Errorf("value %q: not a float as the format writes one", s)
	}
	return v, nil
}

// statusForMetrics is a Status with something in every field.
func statusForMetrics(name, control string) Status {
	t0 := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	var drains DrainStats
	for _, d := range []time.Duration{50 * time.Millisecond, 700 * time.Millisecond, 3 * time.Second, 2 * time.Hour} {
		drains.add(d)
	}
	return Status{
		PID: 42, Name: name, Control: control, Started: t0, State: StateReloading,
		Generations: []GenerationStatus{
			{Gen: 3, PID: 100, State: StateDraining, Started: t0, Age: 90 * time.Second, Connections: 7, RSS: 12 << 20},
			{Gen: 4, PID: 101, State: StateServing, Started: t0.Add(time.Minute), Age: 30 * time.Second, Connections: -1, RSS: 0},
			{Gen: 5, PID: 102, State: StateProbation, Started: t0.Add(80 * time.Second), Age: time.Second, Connections: 0, RSS: 9 << 20},
		},
		Reaped: 2, Restarts: 1, DrainKills: 3, LimitKills: 4,
		Upgrades: UpgradeStats{OK: 5, Failed: 2, LastError: "boom", LastErrorAt: t0.Add(time.Hour)},
		Drains:   drains,
	}
}

func TestWriteMetrics(t *testing.T) {
	var b bytes.Buffer
	if err := WriteMetrics(&b, statusForMetrics(`we"b\sh`+"\nop", "/run/baton/x/control.sock")); err != nil {
		t.Fatal(err)
	}
	p, err := parseExposition(b.String())
	if err != nil {
		t.Fatalf("WriteMetrics wrote what the format does not allow: %v\n%s", err, b.String())
	}
	want := map[string]float64{
		`baton_upgrades_total{result="ok"}`:                                 5,
		`baton_upgrades_total{result="failed"}`:                             2,
		`baton_restarts_total`:                                              1,
		`baton_generation_kills_total{reason="drain_deadline"}`:             3,
		`baton_generation_kills_total{reason="max_draining"}`:               4,
		`baton_generations`:                                                 3,
		`baton_generation_connections{generation="3",pid="100"}`:            7,
		`baton_generation_connections{generation="5",pid="102"}`:            0,
		`baton_generation_resident_memory_bytes{generation="3",pid="100"}`:  12 << 20,
		`baton_generation_age_seconds{generation="4",pid="101"}`:            30,
		`baton_generation_info{generation="5",pid="102",state="probation"}`: 1,
		`baton_master_state{state="reloading"}`:                             1,
		`baton_master_state{state="serving"}`:                               0,
		`baton_drain_duration_seconds_bucket{le="0.1"}`:                     1,
		`baton_drain_duration_seconds_bucket{le="1"}`:                       2,
		`baton_drain_duration_seconds_bucket{le="5"}`:                       3,
		`baton_drain_duration_seconds_bucket{le="300"}`:                     3,
		`baton_drain_duration_seconds_bucket{le="+Inf"}`:                    4,
		`baton_drain_duration_seconds_count`:                                4,
		`baton_drain_duration_seconds_sum`:                                  0.05 + 0.7 + 3 + 7200,
		`baton_drain_last_duration_seconds`:                                 7200,
		`baton_upgrade_last_failure_time_seconds`:                           float64(time.Date(2026, 12, 5, 2, 0, 0, 0, time.UTC).Unix()),
	}
	for series, v := range want {
		got, ok := p.samples[series]
		if !ok || math.Abs(got-v) > 1e-9*math.Max(1, math.Abs(v)) {
			t.Errorf("%s = %v (present %v); want %v", series, got, ok, v)
		}
	}
	// Unknown figures are left out rather than written as 0 or -1.
	for _, series := range []string{`baton_generation_connections{generation="4",pid="101"}`, `baton_generation_resident_memory_bytes{generation="4",pid="101"}`} {
		if _, ok := p.samples[series]; ok {
			t.Errorf("%s written; want it left out (unknown)", series)
		}
	}
	for series, ls := range p.labels {
		if strings.HasPrefix(series, "baton_master_info") && ls["service"] != `we"b\sh`+"\nop" {
			t.Errorf("service label read back as %q", ls["service"])
		}
	}
}

// TestParseExpositionRejects makes sure the checker checks.
func TestParseExpositionRejects(t *testing.T) {
	for _, bad := range []string{
		"baton_x 1\n",                                             // no TYPE
		"# TYPE baton_x gauge\nbaton_x 1",                         // no final line feed
		"# TYPE baton_x counter\nbaton_x 1\n",                     // counter not _total
		"# TYPE baton_x gauge\nbaton_x{a=\"b\\t\"} 1\n",           // bad escape
		"# TYPE baton_x gauge\nbaton_x{a=\"b\"} one\n",            // bad value
		"# TYPE baton_x gauge\nbaton_x 1\nbaton_x 2\n",            // twice
		"# TYPE baton_x gauge\n# TYPE baton_y gauge\nbaton_x 1\n", // away from its family
		"# TYPE baton_h histogram\nbaton_h_bucket{le=\"1\"} 2\nbaton_h_bucket{le=\"2\"} 1\nbaton_h_bucket{le=\"+Inf\"} 2\nbaton_h_sum 1\nbaton_h_count 2\n", // not cumulative
		"# TYPE baton_h histogram\nbaton_h_bucket{le=\"1\"} 2\nbaton_h_sum 1\nbaton_h_count 2\n",                                                            // no +Inf
		"# TYPE other gauge\nother 1\n", // not baton_
	} {
		if _, err := parseExposition(bad); err == nil {
			t.Errorf("parseExposition(%q) = nil error; want one", bad)
		}
	}
}

// FuzzWriteMetrics: whatever the service's name and control path, the
// output is in the format and the label values read back as they were.
func FuzzWriteMetrics(f *testing.F) {
	f.Add("web", "/run/baton/web/control.sock")
	f.Add(`a"b\c`, "line\nfeed")
	f.Add("", `\\\"`)
	f.Fuzz(func(t *testing.T, name, control string) {
		var b bytes.Buffer
		if err := WriteMetrics(&b, statusForMetrics(name, control)); err != nil {
			t.Fatal(err)
		}
		p, err := parseExposition(b.String())
		if err != nil {
			t.Fatalf("%v\n%s", err, b.String())
		}
		found := false
		for series, ls := range p.labels {
			if strings.HasPrefix(series, "baton_master_info{") {
				found = true
				if ls["service"] != name || ls["control"] != control {
					t.Errorf("labels read back as %q, %q; want %q, %q", ls["service"], ls["control"], name, control)
				}
			}
		}
		if !found {
			t.Error("no baton_master_info")
		}
	})
}

func TestMetricsAddr(t *testing.T) {
	for _, c := range []struct {
		in, addr string
		loopback bool
		bad      bool
	}{
		{in: ":9100", addr: "127.0.0.1:9100", loopback: true},
		{in: "127.0.0.1:0", addr: "127.0.0.1:0", loopback: true},
		{in: "[::1]:9100", addr: "[::1]:9100", loopback: true},
		{in: "localhost:9100", addr: "localhost:9100", loopback: true},
		{in: "0.0.0.0:9100", addr: "0.0.0.0:9100"},
		{in: "192.0.2.1:9100", addr: "192.0.2.1:9100"},
		{in: "9100", bad: true},
		{in: "host:", bad: true},
	} {
		addr, lo, err := metricsAddr(c.in)
		var cerr *ConfigError
		if c.bad {
			if !errors.As(err, &cerr) || cerr.Field != "Metrics" {
				t.Errorf("metricsAddr(%q) error %v; want a *ConfigError for Metrics", c.in, err)
			}
			continue
		}
		if err != nil || addr != c.addr || lo != c.loopback {
			t.Errorf("metricsAddr(%q) = %q, %v, %v; want %q, %v", c.in, addr, lo, err, c.addr, c.loopback)
		}
	}
}
