package nspawn

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The harness against plain units, so that a failure of the baton tests
// built on it is baton's and not the container's: bookworm (systemd 252)
// and trixie (257), each in the host's cgroup layout and in the unified
// one.
func TestContainer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		release Release
		unified bool
	}{
		{"bookworm/host-cgroups", Bookworm, false},
		{"bookworm/unified-cgroups", Bookworm, true},
		{"trixie/host-cgroups", Trixie, false},
		{"trixie/unified-cgroups", Trixie, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Boot(t, Options{Release: tc.release, Unified: tc.unified})
			version, _ := c.Systemctl("--version")
			t.Logf("%s, %s cgroups", strings.SplitN(version, "\n", 2)[0], c.Cgroups)
			if tc.unified && c.Cgroups != "unified" {
				t.Errorf("%s booted with %s cgroups; want unified", tc.name, c.Cgroups)
			}
			if c.Release != tc.release {
				t.Errorf("Container.Release = %q; want %q", c.Release, tc.release)
			}
			testContainer(t, c)
		})
	}
}

func testContainer(t *testing.T, c *Container) {
	t.Run("Run", func(t *testing.T) {
		out, err := c.Run("cat", "/etc/os-release")
		if err != nil || osReleaseCodename(out) != string(c.Release) {
			t.Errorf("Run(cat /etc/os-release) = %q, %v; want %s's", out, err, c.Release)
		}
		if out, err := c.Run("/bin/sh", "-c", "echo oops; exit 3"); err == nil || out != "oops" || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("Run(exit 3) = %q, %v; want the output and an error saying exit status 3", out, err)
		}
		if _, err := c.Run(); err == nil {
			t.Errorf("Run() with no command: no error")
		}
	})

	t.Run("Dir", func(t *testing.T) {
		if err := os.WriteFile(filepath.Join(c.Dir, "from-host"), []byte("hello"), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := c.Run("/bin/sh", "-c", "cat "+GuestDir+"/from-host && echo back > "+GuestDir+"/from-guest")
		if err != nil || out != "hello" {
			t.Errorf("reading %s/from-host in the container: %q, %v; want hello", GuestDir, out, err)
		}
		if b, err := os.ReadFile(filepath.Join(c.Dir, "from-guest")); err != nil || string(b) != "back\n" {
			t.Errorf("reading from-guest on the host: %q, %v; want back", b, err)
		}
	})

	t.Run("Simple", func(t *testing.T) {
		const unit = "nspawn-simple.service"
		install(t, c, unit, "[Service]\nType=simple\nExecStart=/bin/sleep infinity\n")
		systemctl(t, c, "start", unit)
		p := show(t, c, unit)
		if p["ActiveState"] != "active" || p["SubState"] != "running" || p["MainPID"] == "0" {
			t.Fatalf("after start: %v; want active, running, a MainPID", p)
		}
		main, _ := strconv.Atoi(p["MainPID"])
		if pids, err := c.UnitPIDs(unit); err != nil || !slices.Equal(pids, []int{main}) {
			t.Errorf("UnitPIDs(%s) = %v, %v; want just MainPID [%d]", unit, pids, err, main)
		}
		systemctl(t, c, "stop", unit)
		p = show(t, c, unit)
		if p["ActiveState"] != "inactive" || p["Result"] != "success" || p["MainPID"] != "0" {
			t.Errorf("after stop: %v; want inactive, success, no MainPID", p)
		}
		if pids, err := c.UnitPIDs(unit); err != nil || len(pids) != 0 {
			t.Errorf("UnitPIDs(%s) after stop = %v, %v; want none", unit, pids, err)
		}
	})

	// Type=notify, ExecReload through $MAINPID, and restarts past the
	// default start rate limit: the moves the baton tests make.
	t.Run("Notify", func(t *testing.T) {
		const unit = "nspawn-notify.service"
		install(t, c, unit, `[Unit]
StartLimitIntervalSec=0
[Service]
Type=notify
NotifyAccess=all
ExecStart=/bin/sh -c 'trap "echo reloaded by HUP" HUP; systemd-notify --ready; while :; do sleep 1 & wait $!; done'
ExecReload=/bin/sh -c "kill -HUP $MAINPID"
TimeoutStartSec=10
TimeoutStopSec=5
`)
		for i := range 7 {
			systemctl(t, c, "restart", unit)
			if p := show(t, c, unit); p["ActiveState"] != "active" {
				t.Fatalf("after restart %d: %v; want active", i+1, p)
			}
		}
		systemctl(t, c, "reload", unit)
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(c.Journal(unit), "reloaded by HUP") {
			if time.Now().After(deadline) {
				t.Fatalf("no \"reloaded by HUP\" in the journal 5s after systemctl reload:\n%s", c.Journal(unit))
			}
			time.Sleep(20 * time.Millisecond)
		}
		systemctl(t, c, "stop", unit)
		if p := show(t, c, unit); p["Result"] != "success" {
			t.Errorf("after stop: %v; want Result=success", p)
		}
	})
}

func install(t *testing.T, c *Container, name, text string) {
	t.Helper()
	if err := c.InstallUnit(name, text); err != nil {
		t.Fatalf("InstallUnit(%s): %v", name, err)
	}
}

func systemctl(t *testing.T, c *Container, args ...string) {
	t.Helper()
	if _, err := c.Systemctl(args...); err != nil {
		t.Fatalf("%v\njournal:\n%s", err, c.Journal(args[len(args)-1]))
	}
}

func show(t *testing.T, c *Container, unit string) map[string]string {
	t.Helper()
	p, err := c.Show(unit, "MainPID", "ActiveState", "SubState", "Result", "NRestarts")
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnavailable(t *testing.T) {
	for _, tc := range []struct {
		require string
		want    string
	}{
		{"", "skip"},
		{"0", "skip"},
		{"1", "fatal"},
	} {
		t.Setenv(EnvRequire, tc.require)
		f := &fakeTB{TB: t}
		unavailable(f, "no %s here", "nspawn")
		if f.ended != tc.want || !strings.Contains(f.msg, "no nspawn here") {
			t.Errorf("%s=%q: unavailable ended the test with %s %q; want %s", EnvRequire, tc.require, f.ended, f.msg, tc.want)
		}
	}
}

// fakeTB records how a test would have ended.
type fakeTB struct {
	testing.TB
	ended, msg string
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.ended, f.msg = "fatal", fmt.Sprintf(format, args...)
}
func (f *fakeTB) Skipf(format string, args ...any) {
	f.ended, f.msg = "skip", fmt.Sprintf(format, args...)
}
