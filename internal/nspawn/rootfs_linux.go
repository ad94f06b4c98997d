//go:build linux

package nspawn

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// debootstrapArgs build the rootfs of release: the smallest Debian that
// boots systemd. bookworm's debootstrap knows trixie (its script is sid's).
func debootstrapArgs(release Release) []string {
	return []string{"--variant=minbase", "--include=systemd,systemd-sysv", string(release)}
}

const debianMirror = "http://deb.debian.org/debian"

// EnsureRootfs returns the rootfs of release ("" for DefaultRelease) to
// boot: the directory named by release.EnvRootfs(), or
// release.DefaultRootfs(). If it does not exist it is built with
// debootstrap first, once per machine; a test that finds another test
// binary building it waits for that build. Each release has its own
// directory and its own lock: building trixie never holds up bookworm.
func EnsureRootfs(t testing.TB, release Release) string {
	t.Helper()
	release = release.orDefault()
	if err := release.check(); err != nil {
		t.Fatalf("%v", err)
	}
	env := release.EnvRootfs()
	root := os.Getenv(env)
	if root == "" {
		root = release.DefaultRootfs()
	}
	if bootable(root) {
		checkRelease(t, root, release, env)
		return root
	}
	if _, err := os.Lstat(root); err == nil {
		t.Fatalf("nspawn: %s exists but holds no systemd (no %s); remove it to have it rebuilt, or set %s to another directory",
			root, filepath.Join(root, "usr/lib/systemd/systemd"), env)
	}
	if os.Geteuid() != 0 {
		unavailable(t, "no rootfs at %s, and building one needs root", root)
	}
	if _, err := exec.LookPath("debootstrap"); err != nil {
		unavailable(t, "no rootfs at %s and no debootstrap to build it (%v); install debootstrap or set %s", root, err, env)
	}
	budget := timeLeft(t, DebootstrapTimeout)
	if budget < time.Minute {
		unavailable(t, "no rootfs at %s, and only %v left before the test deadline to build one", root, budget.Round(time.Second))
	}
	deadline := time.Now().Add(budget)

	parent := filepath.Dir(root)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		t.Fatalf("nspawn: making %s: %v", parent, err)
	}
	// The lock file stays: deleting it would let a waiter lock a file
	// that a newcomer no longer sees.
	lock, err := os.OpenFile(filepath.Join(parent, "."+filepath.Base(root)+".build-lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	defer lock.Close()
	for unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB) != nil {
		if time.Now().After(deadline) {
			t.Fatalf("nspawn: another process has been building %s for longer than %v", root, budget.Round(time.Second))
		}
		time.Sleep(200 * time.Millisecond)
	}
	defer unix.Flock(int(lock.Fd()), unix.LOCK_UN)
	if bootable(root) { // built by whoever held the lock
		checkRelease(t, root, release, env)
		return root
	}

	tmp, err := os.MkdirTemp(parent, "."+filepath.Base(root)+".build-")
	if err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // it becomes the container's /
		t.Fatalf("nspawn: %v", err)
	}
	logPath := filepath.Join(t.TempDir(), "debootstrap.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("nspawn: %v", err)
	}
	defer logFile.Close()
	args := append(debootstrapArgs(release), tmp, debianMirror)
	t.Logf("nspawn: no %s rootfs at %s: building one (about 30s, once per machine): debootstrap %s", release, root, strings.Join(args, " "))
	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmd := exec.CommandContext(ctx, "debootstrap", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (no end within %v)", err, budget.Round(time.Second))
		}
		log, _ := os.ReadFile(logPath)
		if cerr := discard(tmp); cerr != nil {
			t.Errorf("nspawn: %v", cerr)
		}
		unavailable(t, "debootstrap into %s failed: %v\n%s", tmp, err, tail(string(log), 30))
	}
	if err := os.Rename(tmp, root); err != nil {
		t.Fatalf("nspawn: moving the new rootfs into place: %v", err)
	}
	t.Logf("nspawn: built the %s rootfs %s in %v", release, root, time.Since(start).Round(time.Second))
	return root
}

// bootable reports whether root looks like a tree systemd can boot from.
func bootable(root string) bool {
	for _, p := range []string{"usr/lib/systemd/systemd", "usr/bin/systemctl", "usr/bin/journalctl"} {
		if _, err := os.Stat(filepath.Join(root, p)); err != nil {
			return false
		}
	}
	return true
}

// checkRelease fails t if the tree at root is not of release: a variable
// pointing a trixie test at a bookworm tree would otherwise test systemd
// 252 and call it 257.
func checkRelease(t testing.TB, root string, release Release, env string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "usr/lib/os-release"))
	if err != nil {
		t.Fatalf("nspawn: the rootfs %s has no os-release to tell its release by: %v", root, err)
	}
	if got := osReleaseCodename(string(b)); got != string(release) {
		t.Fatalf("nspawn: the rootfs %s is Debian %q, not %s; point %s at a %s tree or unset it", root, got, release, env, release)
	}
}

// discard removes a failed build. debootstrap mounts /proc and /sys (and
// may bind /dev) inside its target and a killed debootstrap leaves them
// there: a recursive delete through them would reach the host's. Unmount
// them first, and delete nothing if any stays mounted.
func discard(dir string) error {
	b, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		return fmt.Errorf("not removing %s: %w", dir, err)
	}
	var mounted []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 && (f[1] == dir || strings.HasPrefix(f[1], dir+"/")) {
			mounted = append(mounted, f[1])
		}
	}
	for i := len(mounted) - 1; i >= 0; i-- { // deepest were mounted last
		unix.Unmount(mounted[i], unix.MNT_DETACH)
	}
	b, _ = os.ReadFile("/proc/self/mounts")
	if strings.Contains(string(b), " "+dir+"/") || strings.Contains(string(b), " "+dir+" ") {
		return fmt.Errorf("not removing the failed build %s: something is still mounted inside", dir)
	}
	if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing the failed build: %w", err)
	}
	return nil
}
