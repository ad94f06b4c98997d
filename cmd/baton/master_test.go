package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton/supervisor"
)

func TestMasterUsageErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run"}, exitUsage, "no program to run"},
		{[]string{"run", "--listen", "http://:80", "--", "x"}, exitUsage, `unknown scheme "http"`},
		{[]string{"run", "--listen", "tcp://:99999", "--", "x"}, exitUsage, "bad port"},
		{[]string{"run", "--stop-signal", "FROB", "--", "x"}, exitUsage, `-stop-signal "FROB": unknown signal`},
		{[]string{"run", "--ready", "udp", "--control", "/nonexistent/x/c.sock", "--", "x"}, exitUsage, "want notify, tcp or an http:// URL"},
		{[]string{"run", "--ready", "http://", "--control", "/nonexistent/x/c.sock", "--", "x"}, exitUsage, "want http://HOST:PORT/PATH"},
		{[]string{"run", "--restart-limit", "0", "--", "x"}, exitUsage, "say -1 to never restart"},
		{[]string{"run", "--restart-limit", "-2", "--", "x"}, exitUsage, "-1 (never) or more than 0"},
		{[]string{"run", "--probation", "-1s", "--", "x"}, exitUsage, "must not be negative"},
		{[]string{"run", "--max-draining", "-1", "--", "x"}, exitUsage, "must not be negative"},
		{[]string{"run", "--metrics", "9100", "--control", "/nonexistent/x/c.sock", "--", "x"}, exitUsage, "want HOST:PORT or :PORT"},
		{[]string{"reload", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"status", "--control", "/nonexistent/c.sock"}, exitNoStart, "no answer from the master"},
		{[]string{"stop", "--nope"}, exitUsage, "flag provided but not defined"},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("baton %q = %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}

func TestStopSignals(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"TERM", "sigterm", "SIGQUIT", "winch"} {
		if _, ok := signalByName(s); !ok {
			t.Errorf("signalByName(%q) = false", s)
		}
	}
	if _, ok := signalByName("CHLD"); ok {
		t.Error("signalByName(CHLD) = true; SIGCHLD cannot be a stop signal")
	}
}

// TestPrintStatus: the text of "baton status" carries the figures of the
// JSON.
func TestPrintStatus(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 12, 5, 1, 0, 0, 0, time.UTC)
	st := &supervisor.Status{
		PID: 7, State: supervisor.StateServing, Started: t0, Control: "/run/c.sock",
		Generations: []supervisor.GenerationStatus{
			{Gen: 2, PID: 11, State: supervisor.StateDraining, Started: t0, Age: 90 * time.Second, DrainingSince: t0.Add(time.Minute), Connections: 50, RSS: 12 << 20},
			{Gen: 3, PID: 12, State: supervisor.StateServing, Started: t0.Add(time.Minute), Age: 30 * time.Second, ReadyAfter: 40 * time.Millisecond, Connections: -1},
		},
		Restarts: 1, DrainKills: 2, LimitKills: 3,
		Upgrades: supervisor.UpgradeStats{OK: 4, Failed: 1, LastError: "generation 5: died 120 ms into probation: exit status 6", LastErrorAt: t0.Add(time.Hour)},
		Drains:   supervisor.DrainStats{Count: 2, Sum: 3 * time.Second, Last: time.Second},
	}
	var stdout, stderr bytes.Buffer
	printStatus(ui{stdout: &stdout, stderr: &stderr}, st)
	out := stdout.String()
	for _, want := range []string{
		"gen 2       pid 11  draining  started 01:00:00  age 1m30s", "50 conns", "rss 12.0 MiB",
		"reloads     4 ok, 1 failed; last failure at 2026-12-05 02:00:00: generation 5: died 120 ms into probation",
		"restarts    1; killed 2 at the drain deadline, 3 beyond -max-draining",
		"drains      2, mean 1.5s, last 1s",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("baton status printed\n%s\nwithout %q", out, want)
		}
	}
	if strings.Contains(out, "-1 conns") {
		t.Errorf("baton status printed an unknown count as -1:\n%s", out)
	}
}
