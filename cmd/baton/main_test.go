package main

import (
	"bytes"
	"context"

	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// baton builds the command once per test binary, so the demo can re-run
// itself as the demo server the way an installed baton does.
func baton(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "baton")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestDemoPasses(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the full demo: skipped with -short")
	}
	bin := baton(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "demo", "-upgrades", "5", "-clients", "8", "-slow", "200ms")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		t.Fatalf("baton demo: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	for _, want := range []string{"PASS: 0 failed requests across 5 upgrades", "fresh", "keepalive", "upgrades        5 ok"} {
		if !strings.Contains(stdout.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, stdout.String())
		}
	}
	if !strings.Contains(stderr.String(), "upgrade 5/5 ok") {
		t.Errorf("progress lacks the last upgrade:\n%s", stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "Usage: baton"},
		{[]string{"frob"}, exitUsage, `unknown command "frob"`},
		{[]string{"demo", "-mode", "bogus"}, exitUsage, `-mode "bogus": want fresh, keepalive, both or pausing`},
		{[]string{"demo", "-upgrades", "0"}, exitUsage, "at least 1"},
		{[]string{"demo", "-mode", "pausing", "-max-pause", "0"}, exitUsage, "-max-pause must be more than 0"},
		{[]string{"demo", "-listen", "10.0.0.1:80"}, exitUsage, "not a loopback address"},
		{[]string{"demo", "extra"}, exitUsage, `unexpected argument "extra"`},
		{[]string{"demo", "-nope"}, exitUsage, "flag provided but not defined"},
		{[]string{"demo-server", "-listen"}, exitUsage, "flag needs an argument"},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, &stdout, &stderr)
		if code != tc.code || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("baton %q = %d, stderr %q; want %d and %q", tc.args, code, stderr.String(), tc.code, tc.want)
		}
	}
}

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"help"}, &stdout, &stderr); code != exitOK || !strings.Contains(stdout.String(), "demo") {
		t.Errorf("baton help = %d, %q", code, stdout.String())
	}
}
