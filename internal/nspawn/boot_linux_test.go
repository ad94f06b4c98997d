//go:build linux

package nspawn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"golang.org/x/sys/unix"
)

// A container whose nspawn was killed, not stopped, must still be torn down
// completely: its cgroups, nspawn's leftovers on the host, its processes.
func TestShutdownAfterKill(t *testing.T) {
	t.Parallel()
	c := Boot(t, Options{})
	systemd := c.PID
	if err := c.sys.cmd.Process.Kill(); err != nil {
		t.Fatalf("killing nspawn: %v", err)
	}
	select {
	case <-c.sys.exited:
	case <-time.After(5 * time.Second):
		t.Fatalf("nspawn (pid %d) not reaped 5s after SIGKILL", c.sys.cmd.Process.Pid)
	}
	if _, err := c.Run("true"); err != ErrNotRunning {
		t.Errorf("Run after nspawn died: %v; want ErrNotRunning", err)
	}
	start := time.Now()
	if err := c.shutdown(); err != nil {
		t.Errorf("shutdown after SIGKILL: %v", err)
	}
	t.Logf("shutdown after SIGKILL took %v", time.Since(start).Round(time.Millisecond))
	if st := state(systemd); st != "" && st != "Z" {
		t.Errorf("the container's systemd (host pid %d) still runs after shutdown: state %s", systemd, st)
	}
	for _, cg := range c.sys.cgroups {
		if _, err := os.Stat(cg); err == nil {
			t.Errorf("cgroup %s left behind", cg)
		}
	}
	if _, err := os.Stat("/run/systemd/nspawn/propagate/" + c.Name); err == nil {
		t.Errorf("/run/systemd/nspawn/propagate/%s left behind", c.Name)
	}
	if err := c.shutdown(); err != nil {
		t.Errorf("second shutdown: %v; want the first's nil", err)
	}
}

// state returns the one-letter state of pid ("R", "S", "Z", …), or "" if
// there is no such process.
func state(pid int) string {
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return ""
	}
	return string(st.State)
}

// A failed debootstrap can leave /proc, /sys or a bind of the host's /dev
// mounted inside its target; discarding the build must unmount them, never
// delete through them.
func TestDiscard(t *testing.T) {
	if os.Geteuid() != 0 {
		unavailable(t, "mounting needs root")
	}
	tmp := t.TempDir()
	host := filepath.Join(tmp, "host-dev") // stands for the host's /dev
	dir := filepath.Join(tmp, "build")
	inner := filepath.Join(dir, "dev")
	for _, d := range []string{host, inner} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	precious := filepath.Join(host, "null")
	if err := os.WriteFile(precious, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(host, inner, "", unix.MS_BIND, ""); err != nil {
		unavailable(t, "bind-mounting: %v", err)
	}
	if err := discard(dir); err != nil {
		unix.Unmount(inner, unix.MNT_DETACH)
		t.Fatalf("discard: %v", err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("after discard, %s: %v; want it gone", dir, err)
	}
	if b, err := os.ReadFile(precious); err != nil || string(b) != "mine" {
		t.Errorf("discard deleted through a bind mount: %s: %q, %v", precious, b, err)
	}
	if b, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(b), dir) {
		t.Errorf("after discard, still mounted under %s", dir)
	}
}
