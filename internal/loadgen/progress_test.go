package loadgen

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"
)

func TestProgressBar(t *testing.T) {
	t.Parallel()
	calls := []Progress{
		{UpgradesTotal: 4, Requests: 10, Elapsed: 100 * time.Millisecond},
		{UpgradesDone: 1, UpgradesTotal: 4, Requests: 100, Elapsed: 500 * time.Millisecond},
		{UpgradesDone: 1, UpgradesTotal: 4, Requests: 150, Elapsed: 600 * time.Millisecond},
		{UpgradesDone: 2, UpgradesFailed: 1, UpgradesTotal: 4, Requests: 200, Failures: 3, Elapsed: 900 * time.Millisecond},
		{UpgradesDone: 4, UpgradesFailed: 1, UpgradesTotal: 4, Requests: 400, Failures: 3, Elapsed: 1500 * time.Millisecond},
		{UpgradesDone: 4, UpgradesFailed: 1, UpgradesTotal: 4, Requests: 420, Failures: 3, Elapsed: 1600 * time.Millisecond, Done: true},
	}

	t.Run("terminal", func(t *testing.T) {
		var b bytes.Buffer
		bar := NewProgressBar(&b, true)
		for _, p := range calls {
			bar(p)
		}
		out := b.String()
		if n := strings.Count(out, "\r"); n != len(calls) {
			t.Errorf("%d redraws (\\r) for %d calls in %q", n, len(calls), out)
		}
		if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
			t.Errorf("want exactly one newline, at the end, after Done: %q", out)
		}
		for _, want := range []string{
			"\r[--------------------] 0/4 upgrades  10 requests  0 failed  100ms\x1b[K",
			"\r[##########----------] 2/4 upgrades  200 requests  3 failed  900ms\x1b[K",
			"\r[####################] 4/4 upgrades  420 requests  3 failed  1.6s\x1b[K\n",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("output lacks %q:\n%q", want, out)
			}
		}
	})

	t.Run("plain", func(t *testing.T) {
		var b bytes.Buffer
		bar := NewProgressBar(&b, false)
		for _, p := range calls {
			bar(p)
		}
		want := "upgrade 1/4 ok: 100 requests, 0 failed, 500ms\n" +
			"upgrade 2/4 FAILED: 200 requests, 3 failed, 900ms\n" +
			"upgrade 3/4 ok: 400 requests, 3 failed, 1.5s\n" +
			"upgrade 4/4 ok: 400 requests, 3 failed, 1.5s\n"
		if got := b.String(); got != want {
			t.Errorf("plain progress =\n%s\nwant\n%s", got, want)
		}
	})
}

func TestIsTerminalNot(t *testing.T) {
	t.Parallel()
	f, err := os.Create(t.TempDir() + "/file")
	if err != nil {
		t.Fatalf("os.Create: %v", err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Errorf("IsTerminal(regular file) = true")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatalf("os.Pipe: %v", err)
	}
	defer r.Close()
	defer w.Close()
	if IsTerminal(r) || IsTerminal(w) {
		t.Errorf("IsTerminal(pipe) = true")
	}
}
