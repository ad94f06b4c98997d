package nspawn

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Environment variables the package reads.
const (
	// EnvRootfs, if set, is where EnsureRootfs looks for (and builds) the
	// rootfs instead of DefaultRootfs.
	EnvRootfs = "BATON_ROOTFS"
	// EnvRequire set to 1 turns every "cannot run here" skip into a
	// failure: CI sets it so that a broken machine cannot pass by running
	// nothing.
	EnvRequire = "BATON_REQUIRE_INTEGRATION"
)

// Defaults for Options fields left at their zero value, and fixed bounds.
const (
	DefaultRootfs = "/var/cache/baton/rootfs"

	// GuestDir is where Options.Dir appears inside the container.
	GuestDir = "/opt/baton"

	// DefaultBootTimeout bounds Boot. A boot takes 200 to 400ms;
	// seconds mean a loaded machine, half a minute a hang.
	DefaultBootTimeout = 30 * time.Second

	// ShutdownTimeout is how long the container may take to halt before
	// nspawn is killed. A clean halt takes 100 to 200ms; a unit that
	// ignores SIGTERM holds it for its TimeoutStopSec.
	ShutdownTimeout = 15 * time.Second

	// CommandTimeout bounds every command Run executes. systemctl start
	// waits for the job; units used by tests have shorter timeouts.
	CommandTimeout = time.Minute

	// DebootstrapTimeout bounds building a rootfs. It takes about 30s
	// with a nearby mirror.
	DebootstrapTimeout = 5 * time.Minute
)

// Options configures Boot. The zero value boots DefaultRootfs (bookworm)
// with a fresh temporary directory at GuestDir.
type Options struct {
	// Release is the Debian release to boot, and so the systemd version.
	// Defaults to DefaultRelease, bookworm (systemd 252).
	Release Release

	// Rootfs is the tree to boot; it is never written to, and must be of
	// Release. Defaults to EnsureRootfs(t, Release).
	Rootfs string

	// Dir is the host directory that appears, read-write, at GuestDir.
	// Defaults to a new t.TempDir().
	Dir string

	// BootTimeout bounds the boot, up to systemd answering
	// is-system-running. Defaults to DefaultBootTimeout.
	BootTimeout time.Duration

	// Unified gives the container the unified cgroup hierarchy (cgroup2
	// only) even on a hybrid host, through nspawn's
	// SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1. It matters: systemd learns of
	// processes leaving a unit from cgroup2 events, which the v1
	// hierarchy of a hybrid container does not give it. Defaults to
	// false: whatever nspawn picks for the host, hybrid on a hybrid host.
	Unified bool
}

// A Container is a booted systemd. Its methods may be called from any
// goroutine and from subtests of the test that booted it.
type Container struct {
	// Name is the machine name, unique on the host.
	Name string
	// Dir is the host side of GuestDir.
	Dir string
	// PID is the container's systemd, as a pid on the host.
	PID int
	// BootTime is how long Boot took from starting nspawn to systemd
	// answering.
	BootTime time.Duration
	// Release is the Debian release booted.
	Release Release
	// Cgroups is the cgroup layout the container's systemd sees:
	// "unified" (cgroup2 only), "hybrid" (v1 for its own tracking, with
	// cgroup2 beside) or "legacy" (v1 only).
	Cgroups string

	rootfs  string
	unified bool
	console string // file that nspawn's output (the container's console) goes to

	sys sysState // the OS part: nspawn's process, cgroups
}

// ErrNotRunning is returned by Run and the methods built on it once the
// container has been torn down or has died.
var ErrNotRunning = errors.New("nspawn: container not running")

// Run executes args in the container (its mount, UTS, IPC, network, pid and
// cgroup namespaces) as root, with a minimal environment, and returns what
// it wrote to stdout and stderr, trimmed. The error says what was run and
// how it ended; it includes the output too, for t.Fatal messages.
func (c *Container) Run(args ...string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("nspawn: Run with no command")
	}
	if !c.sys.running() {
		return "", ErrNotRunning
	}
	ctx, cancel := context.WithTimeout(context.Background(), CommandTimeout)
	defer cancel()
	nsArgs := append([]string{"-t", strconv.Itoa(c.PID), "-m", "-u", "-i", "-n", "-p", "-C", "--"}, args...)
	cmd := exec.CommandContext(ctx, "nsenter", nsArgs...)
	// The host's environment has no business inside: a SYSTEMD_* or
	// LANG from the host would change what systemctl prints.
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0"}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	s := strings.TrimSpace(out.String())
	switch {
	case ctx.Err() != nil:
		return s, fmt.Errorf("nspawn: %q in %s: no end within %v; output: %q", strings.Join(args, " "), c.Name, CommandTimeout, s)
	case err != nil:
		return s, fmt.Errorf("nspawn: %q in %s: %w; output: %q", strings.Join(args, " "), c.Name, err, s)
	}
	return s, nil
}

// Systemctl runs systemctl in the container with args.
func (c *Container) Systemctl(args ...string) (string, error) {
	return c.Run(append([]string{"systemctl", "--no-pager"}, args...)...)
}

// Show returns the properties of unit that systemctl show prints for props,
// such as MainPID, ActiveState, SubState, Result, NRestarts. A property
// systemd does not know is absent from the map.
func (c *Container) Show(unit string, props ...string) (map[string]string, error) {
	args := []string{"show", unit}
	if len(props) > 0 {
		args = append(args, "--property="+strings.Join(props, ","))
	}
	out, err := c.Systemctl(args...)
	if err != nil {
		return nil, err
	}
	return parseShow(out), nil
}

// parseShow parses systemctl show's KEY=VALUE lines. A value may itself
// contain '='.
func parseShow(out string) map[string]string {
	m := make(map[string]string)
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// MainPID returns the unit's MainPID (0 when it has none), as a pid in the
// container.
func (c *Container) MainPID(unit string) (int, error) {
	p, err := c.Show(unit, "MainPID")
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(p["MainPID"])
	if err != nil {
		return 0, fmt.Errorf("nspawn: MainPID of %s: %w", unit, err)
	}
	return pid, nil
}

// Journal returns what the journal holds for unit, with monotonic
// timestamps, for failure messages. It never fails: an error becomes the
// text.
func (c *Container) Journal(unit string) string {
	out, err := c.Run("journalctl", "--no-pager", "--quiet", "-o", "short-monotonic", "-u", unit)
	if err != nil {
		return fmt.Sprintf("(journal of %s: %v)", unit, err)
	}
	return out
}

// UnitPIDs returns the pids (in the container) of every process in the
// unit's cgroup, read from /proc in the container so that it works the same
// whatever the cgroup layout. A stopped unit has none.
func (c *Container) UnitPIDs(unit string) ([]int, error) {
	cg := "/system.slice/" + unit
	if p, err := c.Show(unit, "ControlGroup"); err == nil && p["ControlGroup"] != "" {
		cg = p["ControlGroup"]
	}
	// The line is "0::CG" on the unified hierarchy and "N:name=systemd:CG"
	// on the v1 one; CG is relative to the reader's cgroup namespace,
	// which may or may not be the container's, so only its end counts.
	// One grep per file: a process may exit between the glob and the
	// read, and one grep over all files would then exit 2 whatever it
	// found.
	re := `(^0::|:name=systemd:).*` + regexp.QuoteMeta(cg) + `$`
	out, err := c.Run("/bin/sh", "-c", `for f in /proc/[0-9]*/cgroup; do grep -q -E -e "$1" "$f" 2>/dev/null && echo "$f"; done; true`, "sh", re)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		// /proc/<pid>/cgroup
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// InstallUnit writes a unit file into Dir and links it into the
// container's /etc/systemd/system, then reloads systemd. Installing a name
// again replaces the unit.
func (c *Container) InstallUnit(name, text string) error {
	if err := os.MkdirAll(filepath.Join(c.Dir, "units"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "units", name), []byte(text), 0o644); err != nil {
		return err
	}
	if _, err := c.Systemctl("link", GuestDir+"/units/"+name); err != nil {
		return err
	}
	_, err := c.Systemctl("daemon-reload")
	return err
}

// cgroupLayout asks the container which cgroup layout its systemd has.
func (c *Container) cgroupLayout() (string, error) {
	out, err := c.Run("/bin/sh", "-c", `stat -f -c %T /sys/fs/cgroup; test -d /sys/fs/cgroup/unified && echo unified-too; true`)
	if err != nil {
		return "", err
	}
	switch {
	case strings.HasPrefix(out, "cgroup2fs"):
		return "unified", nil
	case strings.HasPrefix(out, "tmpfs") && strings.Contains(out, "unified-too"):
		return "hybrid", nil
	case strings.HasPrefix(out, "tmpfs"):
		return "legacy", nil
	}
	return "", fmt.Errorf("nspawn: unknown cgroup layout in %s: %q", c.Name, out)
}

// Console returns what the container printed on its console so far: the
// boot messages of its systemd.
func (c *Container) Console() string {
	b, err := os.ReadFile(c.console)
	if err != nil {
		return fmt.Sprintf("(console: %v)", err)
	}
	return string(b)
}

// unavailable ends a test that cannot run on this machine: a skip, or a
// failure when EnvRequire is 1.
func unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("nspawn: %s (%s=1: integration tests must run)", msg, EnvRequire)
		return // only a fake t gets here
	}
	t.Skipf("nspawn: %s (set %s=1 to make this a failure)", msg, EnvRequire)
}

// timeLeft is how long t may still run, less a margin for its cleanups, or
// def if t has no deadline or def is sooner.
func timeLeft(t testing.TB, def time.Duration) time.Duration {
	d, ok := t.(interface{ Deadline() (time.Time, bool) })
	if !ok {
		return def
	}
	dl, ok := d.Deadline()
	if !ok {
		return def
	}
	return min(def, time.Until(dl)-30*time.Second)
}
