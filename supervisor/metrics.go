package supervisor

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// The master's Prometheus metrics: a Status written in the text
// exposition format, version 0.0.4, by hand — the format is a few lines
// of spec, and a client library would be the module's first dependency
// beyond x/sys. Pure: WriteMetrics turns a Status into text, and the
// tests check every line of it against the format.

// MetricsContentType is the Content-Type of the text exposition format
// WriteMetrics writes.
const MetricsContentType = "text/plain; version=0.0.4; charset=utf-8"

// WriteMetrics writes st in the Prometheus text exposition format 0.0.4:
// every metric named baton_*, in base units (seconds, bytes), counters
// ending in _total, each family with its # HELP and # TYPE lines.
// Per-generation series carry the labels generation and pid.
func WriteMetrics(w io.Writer, st Status) error {
	e := &metricsWriter{w: bufio.NewWriter(w)}
	e.family("baton_master_info", "gauge", "The master: its service name, pid and control socket.")
	e.sample("baton_master_info", labels{{"service", st.Name}, {"pid", strconv.Itoa(st.PID)}, {"control", st.Control}}, 1)
	e.family("baton_master_start_time_seconds", "gauge", "When the master started, in seconds since the epoch.")
	e.sample("baton_master_start_time_seconds", nil, unixSeconds(st.Started))
	e.family("baton_master_state", "gauge", "The master's state: 1 for the one it is in.")
	for _, s := range []State{StateStarting, StateServing, StateReloading, StateRestarting, StateStopping, StateStopped} {
		e.sample("baton_master_state", labels{{"state", string(s)}}, boolValue(st.State == s))
	}
	e.family("baton_master_goroutines", "gauge", "The master's goroutines: steady across reloads, or something leaks.")
	e.sample("baton_master_goroutines", nil, float64(st.Goroutines))

	e.family("baton_upgrades_total", "counter", "Reloads that ended, by result: ok, or failed (the old generation served on).")
	e.sample("baton_upgrades_total", labels{{"result", "ok"}}, float64(st.Upgrades.OK))
	e.sample("baton_upgrades_total", labels{{"result", "failed"}}, float64(st.Upgrades.Failed))
	e.family("baton_upgrade_last_failure_time_seconds", "gauge", "When the last reload failed, in seconds since the epoch; 0 if none did.")
	e.sample("baton_upgrade_last_failure_time_seconds", nil, unixSeconds(st.Upgrades.LastErrorAt))
	e.family("baton_restarts_total", "counter", "Workers started to replace a serving one that crashed.")
	e.sample("baton_restarts_total", nil, float64(st.Restarts))
	e.family("baton_generation_kills_total", "counter", "Draining generations killed, by reason: drain_deadline, or max_draining (too many draining).")
	e.sample("baton_generation_kills_total", labels{{"reason", "drain_deadline"}}, float64(st.DrainKills))
	e.sample("baton_generation_kills_total", labels{{"reason", "max_draining"}}, float64(st.LimitKills))
	e.family("baton_orphans_reaped_total", "counter", "Orphaned descendants of the workers the master reaped.")
	e.sample("baton_orphans_reaped_total", nil, float64(st.Reaped))

	e.family("baton_drain_duration_seconds", "histogram", "How long generations took to drain, from the stop signal to their exit.")
	cum := 0
	for i, le := range DrainBuckets {
		if i < len(st.Drains.Buckets) {
			cum += st.Drains.Buckets[i]
		}
		e.sample("baton_drain_duration_seconds_bucket", labels{{"le", formatFloat(le.Seconds())}}, float64(cum))
	}
	e.sample("baton_drain_duration_seconds_bucket", labels{{"le", "+Inf"}}, float64(st.Drains.Count))
	e.sample("baton_drain_duration_seconds_sum", nil, st.Drains.Sum.Seconds())
	e.sample("baton_drain_duration_seconds_count", nil, float64(st.Drains.Count))
	e.family("baton_drain_last_duration_seconds", "gauge", "How long the last drain that ended took.")
	e.sample("baton_drain_last_duration_seconds", nil, st.Drains.Last.Seconds())

	e.family("baton_generations", "gauge", "Worker processes the master runs, in any state.")
	e.sample("baton_generations", nil, float64(len(st.Generations)))
	e.family("baton_generation_info", "gauge", "Each generation, with its state as a label.")
	for _, g := range st.Generations {
		e.sample("baton_generation_info", labels{{"generation", strconv.Itoa(g.Gen)}, {"pid", strconv.Itoa(g.PID)}, {"state", string(g.State)}}, 1)
	}
	perGen := []struct {
		name, help string
		value      func(GenerationStatus) (float64, bool)
	}{
		{"baton_generation_start_time_seconds", "When the generation started, in seconds since the epoch.",
			func(g GenerationStatus) (float64, bool) { return unixSeconds(g.Started), true }},
		{"baton_generation_age_seconds", "How long the generation has run.",
			func(g GenerationStatus) (float64, bool) { return g.Age.Seconds(), true }},
		{"baton_generation_connections", "Established TCP connections the generation holds on the master's listeners.",
			func(g GenerationStatus) (float64, bool) { return float64(g.Connections), g.Connections >= 0 }},
		{"baton_generation_resident_memory_bytes", "The generation's resident memory (VmRSS).",
			func(g GenerationStatus) (float64, bool) { return float64(g.RSS), g.RSS > 0 }},
	}
	for _, m := range perGen {
		e.family(m.name, "gauge", m.help)
		for _, g := range st.Generations {
			if v, ok := m.value(g); ok {
				e.sample(m.name, labels{{"generation", strconv.Itoa(g.Gen)}, {"pid", strconv.Itoa(g.PID)}}, v)
			}
		}
	}
	if e.err != nil {
		return e.err
	}
	return e.w.Flush()
}

// labels are a sample's labels, in order.
type labels [][2]string

// metricsWriter writes the exposition format, keeping the first error.
type metricsWriter struct {
	w   *bufio.Writer
	err error
}

func (e *metricsWriter) write(s string) {
	if e.err == nil {
		_, e.err = e.w.WriteString(s)
	}
}

func (e *metricsWriter) family(name, typ, help string) {
	e.write("# HELP " + name + " " + escapeHelp(help) + "\n# TYPE " + name + " " + typ + "\n")
}

func (e *metricsWriter) sample(name string, ls labels, v float64) {
	var b strings.Builder
	b.WriteString(name)
	if len(ls) > 0 {
		b.WriteByte('{')
		for i, l := range ls {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(l[0] + `="` + escapeLabel(l[1]) + `"`)
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(formatFloat(v))
	b.WriteByte('\n')
	e.write(b.String())
}

// escapeLabel escapes a label value as the format asks: backslash,
// double quote and line feed.
func escapeLabel(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s)
}

// escapeHelp escapes a HELP text: backslash and line feed.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// formatFloat writes a value as Go's ParseFloat reads it back, as the
// format asks, with +Inf, -Inf and NaN spelled its way.
func formatFloat(v float64) string {
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// unixSeconds is t in seconds since the epoch, 0 for the zero time.
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// metricsAddr resolves Config.Metrics: HOST:PORT as given, or :PORT as
// 127.0.0.1:PORT; loopback says whether the host is a loopback address
// (or "localhost"). Anything else is a *ConfigError.
func metricsAddr(s string) (addr string, loopback bool, err error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return "", false, &ConfigError{Field: "Metrics", Reason: fmt.Sprintf("metrics address %q: want HOST:PORT or :PORT", s)}
	}
	if host == "" {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	loopback = host == "localhost" || err == nil && ip.IsLoopback()
	return net.JoinHostPort(host, port), loopback, nil
}
