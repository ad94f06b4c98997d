package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
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
