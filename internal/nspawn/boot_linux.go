//go:build linux

package nspawn

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"golang.org/x/sys/unix"
)

// sysState is what Boot started and made on the host.
type sysState struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when nspawn has exited and been reaped
	waitErr error         // nspawn's exit, once exited is closed
	cgroups []string      // the container's cgroup in each hierarchy

	stop    sync.Once
	stopErr error
}

func (s *sysState) running() bool {
	if s.exited == nil {
		return false
	}
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// Boot boots systemd from opts.Rootfs in a new container and returns once
// systemd answers is-system-running with running or degraded. The
// container is torn down when t's cleanups run, and t fails if anything of
// it is left. See the package documentation for the machinery.
func Boot(t testing.TB, opts Options) *Container {
	t.Helper()
	if os.Geteuid() != 0 {
		unavailable(t, "systemd-nspawn needs root; running as uid %d", os.Geteuid())
	}
	for _, prog := range []string{"systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(prog); err != nil {
			unavailable(t, "%s not found (%v); install systemd-container and util-linux", prog, err)
		}
	}
	release := opts.Release.orDefault()
	if err := release.check(); err != nil {
		t.Fatalf("%v", err)
	}
	unified := opts.Unified
	rootfs := opts.Rootfs
	if rootfs == "" {
		rootfs = EnsureRootfs(t, release)
	}
	dir := opts.Dir
	if dir == "" {
		dir = t.TempDir()
	}
	bootTimeout := opts.BootTimeout
	if bootTimeout == 0 {
		bootTimeout = DefaultBootTimeout
	}

	mounts, err := os.ReadFile("/proc/self/mounts")
	if err != nil {
		unavailable(t, "reading mounts: %v", err)
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		unavailable(t, "reading /proc/self/cgroup: %v", err)
	}
	parents, err := cgroupParents(string(mounts), string(self))
	if err != nil {
		unavailable(t, "no cgroup to run nspawn in: %v", err)
	}
	for _, p := range parents {
		sweepStale(t, p)
	}

	var rnd [4]byte
	rand.Read(rnd[:])
	name := fmt.Sprintf("%s%d-%s", cgroupPrefix, os.Getpid(), hex.EncodeToString(rnd[:]))
	c := &Container{
		Name:    name,
		Dir:     dir,
		Release: release,
		rootfs:  rootfs,
		unified: unified,
		console: filepath.Join(t.TempDir(), "console.log"),
	}
	for _, p := range parents {
		cg := filepath.Join(p, name)
		if err := os.Mkdir(cg, 0o755); err != nil {
			c.sys.removeCgroups()
			unavailable(t, "cannot make a cgroup for the container: %v", err)
		}
		c.sys.cgroups = append(c.sys.cgroups, cg)
	}
	t.Cleanup(func() {
		if t.Failed() && c.sys.running() {
			if out, err := c.Run("journalctl", "--no-pager", "-o", "short-monotonic", "-n", "150"); err == nil {
				t.Logf("nspawn: last lines of %s's journal:\n%s", c.Name, out)
			}
		}
		start := time.Now()
		err := c.shutdown()
		took := time.Since(start).Round(time.Millisecond)
		if err != nil {
			t.Errorf("nspawn: tearing down %s: %v", c.Name, err)
			t.Logf("nspawn: console of %s:\n%s", c.Name, tail(c.Console(), 60))
		}
		t.Logf("nspawn: %s (%s, %s cgroups) booted in %v, torn down in %v", c.Name, c.Release, c.Cgroups, c.BootTime.Round(time.Millisecond), took)
	})

	start := time.Now()
	if err := c.start(); err != nil {
		t.Fatalf("nspawn: starting %s: %v", c.Name, err)
	}
	if err := c.waitBooted(start.Add(bootTimeout)); err != nil {
		t.Fatalf("nspawn: booting %s from %s: %v\nconsole:\n%s", c.Name, rootfs, err, tail(c.Console(), 60))
	}
	c.BootTime = time.Since(start)
	if c.Cgroups, err = c.cgroupLayout(); err != nil {
		t.Fatalf("%v", err)
	}
	if unified && c.Cgroups != "unified" {
		t.Fatalf("nspawn: %s booted with unified cgroups asked for has %s cgroups", c.Name, c.Cgroups)
	}
	if out, _ := c.Systemctl("is-system-running"); out != "running" {
		failed, _ := c.Systemctl("list-units", "--failed", "--plain", "--no-legend")
		t.Logf("nspawn: %s is %s; failed units:\n%s", c.Name, out, failed)
	}
	return c
}

// start starts nspawn in the container's cgroups.
func (c *Container) start() error {
	console, err := os.OpenFile(c.console, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	defer console.Close()
	args := []string{
		"--quiet",
		// No systemd-machined, no host service manager: neither need
		// exist, and nspawn then keeps to the cgroup it is started in.
		"--register=no", "--keep-unit",
		"--boot",
		// A tmpfs overlay over a read-only rootfs: what the container
		// writes vanishes with it, and containers can share the tree.
		"--volatile=overlay",
		"--directory=" + c.rootfs,
		"--machine=" + c.Name,
		"--bind=" + c.Dir + ":" + GuestDir,
		// Leave the host alone: no journal link under /var/log/journal,
		// no copies of its resolv.conf and timezone.
		"--link-journal=no", "--resolv-conf=off", "--timezone=off",
		// A pty whose output nspawn copies to our file; nothing reads
		// the container's console input.
		"--console=read-only",
	}
	// The shell moves itself into the cgroups, then becomes nspawn: no
	// moment exists at which nspawn runs elsewhere.
	const script = `for d in $BATON_NSPAWN_CGROUPS; do echo $$ > "$d/cgroup.procs" || exit 125; done; exec "$@"`
	cmd := exec.Command("/bin/sh", append([]string{"-c", script, "sh", "systemd-nspawn"}, args...)...)
	cmd.Env = append(os.Environ(), "BATON_NSPAWN_CGROUPS="+strings.Join(c.sys.cgroups, " "))
	if c.unified {
		cmd.Env = append(cmd.Env, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1")
	}
	cmd.Stdout, cmd.Stderr = console, console
	cmd.SysProcAttr = &syscall.SysProcAttr{
		// Its own process group: a ^C meant for go test must not reach
		// nspawn before the cleanups do.
		Setpgid: true,
		// A test binary that dies (a panic, the -timeout) takes the
		// container with it. SIGTERM, not SIGKILL: the container's
		// systemd does not die with nspawn, but nspawn halts it on
		// SIGTERM.
		Pdeathsig: syscall.SIGTERM,
	}
	// The parent-death signal is sent when the thread that started the
	// child exits, not the process (golang/go#27505): start and wait from
	// one goroutine locked to its thread, so that the thread lives as
	// long as nspawn does.
	c.sys.exited = make(chan struct{})
	started := make(chan error)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread: the thread ends with the goroutine, after
		// nspawn has been reaped.
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		c.sys.waitErr = cmd.Wait()
		close(c.sys.exited)
	}()
	if err := <-started; err != nil {
		c.sys.exited = nil
		return err
	}
	c.sys.cmd = cmd
	return nil
}

// waitBooted finds the container's systemd, then waits until it answers
// is-system-running with running or degraded.
func (c *Container) waitBooted(deadline time.Time) error {
	const poll = 10 * time.Millisecond
	nspawn := c.sys.cmd.Process.Pid
	for c.PID == 0 {
		if !c.sys.running() {
			return fmt.Errorf("nspawn exited (%v) before starting systemd", c.sys.waitErr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no systemd under nspawn (pid %d) within the boot timeout", nspawn)
		}
		kids, _ := procfs.Children(nspawn)
		for _, k := range kids {
			if k.Comm == "systemd" {
				c.PID = k.PID
			}
		}
		time.Sleep(poll)
	}
	// Until systemd has set up its private socket systemctl says
	// "offline" or fails to connect: the first ~100ms of boot.
	state := ""
	for {
		out, _ := c.Systemctl("is-system-running")
		state, _, _ = strings.Cut(out, "\n")
		switch state {
		case "running", "degraded":
			return nil
		case "maintenance", "stopping":
			return fmt.Errorf("systemd is %s", state)
		}
		if !c.sys.running() {
			return fmt.Errorf("nspawn exited (%v) during boot", c.sys.waitErr)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("systemd (pid %d) still %q at the boot timeout", c.PID, state)
		}
		time.Sleep(poll)
	}
}

// shutdown halts the container and removes everything Boot made. It
// returns what it could not undo, or found left behind; calls after the
// first return the first's result.
func (c *Container) shutdown() error {
	c.sys.stop.Do(func() { c.sys.stopErr = c.sys.shutdown(c.Name, c.rootfs) })
	return c.sys.stopErr
}

func (s *sysState) shutdown(name, rootfs string) error {
	var errs []error
	// clean: nspawn exited on our SIGTERM, having halted the container.
	// Otherwise (it died before, or we had to kill it) the container's
	// systemd survives it, orphaned, and must be killed here.
	clean := false
	if s.cmd != nil {
		if s.running() {
			// nspawn turns SIGTERM into SIGRTMIN+3 for the container's
			// systemd: a clean halt.
			s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.exited:
				clean = true
			case <-time.After(ShutdownTimeout):
				errs = append(errs, fmt.Errorf("container did not halt within %v of SIGTERM to nspawn (pid %d); killed it", ShutdownTimeout, s.cmd.Process.Pid))
				s.cmd.Process.Kill()
			}
		}
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			errs = append(errs, fmt.Errorf("nspawn (pid %d) still not reaped 5s after SIGKILL", s.cmd.Process.Pid))
		}
	}
	if clean {
		// A halted container leaves nothing running; give the kernel a
		// moment to finish the exits before calling anything a leftover.
		if left := s.waitEmpty(2 * time.Second); len(left) > 0 {
			errs = append(errs, fmt.Errorf("processes left in the container's cgroups after a clean halt: %s; killing them", describe(left)))
		}
	}
	if err := s.killAll(); err != nil {
		errs = append(errs, err)
	}
	if err := s.removeCgroups(); err != nil {
		errs = append(errs, err)
	}
	if err := removeNspawnLeftovers(name, rootfs); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// killAll kills every process in the container's cgroups and waits for
// them to be gone. Killing the container's systemd, init of its pid
// namespace, takes all the others with it.
func (s *sysState) killAll() error {
	return killCgroups(s.cgroups)
}

func killCgroups(cgs []string) error {
	deadline := time.Now().Add(5 * time.Second)
	for {
		var left []int
		for _, cg := range cgs {
			left = append(left, procsUnder(cg)...)
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes survived 5s of SIGKILL: %s", describe(left))
		}
		for _, pid := range left {
			unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEmpty waits up to d for the container's cgroups to hold no process
// and returns those still there.
func (s *sysState) waitEmpty(d time.Duration) []int {
	deadline := time.Now().Add(d)
	for {
		var pids []int
		for _, cg := range s.cgroups {
			pids = append(pids, procsUnder(cg)...)
		}
		slices.Sort(pids)
		pids = slices.Compact(pids)
		if len(pids) == 0 || time.Now().After(deadline) {
			return pids
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// removeCgroups removes the container's cgroups, deepest first (nspawn
// and the container's systemd make a tree inside), and says which it could
// not.
func (s *sysState) removeCgroups() error {
	var errs []error
	for _, cg := range s.cgroups {
		if err := removeCgroupTree(cg, 2*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeCgroupTree rmdirs cg and every cgroup below it, retrying for up to
// d: a cgroup whose last process has just exited can be busy for a moment.
func removeCgroupTree(cg string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		var dirs []string
		filepath.WalkDir(cg, func(p string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		var last error
		for i := len(dirs) - 1; i >= 0; i-- { // children after parents in walk order
			if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
				last = fmt.Errorf("removing cgroup %s: %w", dirs[i], err)
			}
		}
		if _, err := os.Stat(cg); errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			if last == nil {
				last = fmt.Errorf("cgroup %s still exists", cg)
			}
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sweepStale removes, under parent, the cgroups of containers whose test
// process is gone, killed before its cleanups could run, and kills what
// still runs in them. A cgroup name holds its test process's pid; a pid
// that runs again (reused) keeps its cgroup safe, which errs on the side
// of leaving things alone.
func sweepStale(t testing.TB, parent string) {
	ents, err := os.ReadDir(parent)
	if err != nil {
		return
	}
	for _, e := range ents {
		pid, ok := cgroupOwner(e.Name())
		if !ok || !e.IsDir() || unix.Kill(pid, 0) != unix.ESRCH {
			continue
		}
		cg := filepath.Join(parent, e.Name())
		if left := procsUnder(cg); len(left) > 0 {
			t.Logf("nspawn: stale cgroup %s of dead pid %d still has processes, a container nobody tore down: killing %s", cg, pid, describe(left))
			if err := killCgroups([]string{cg}); err != nil {
				t.Logf("nspawn: %v", err)
				continue
			}
		}
		if err := removeCgroupTree(cg, time.Second); err == nil {
			t.Logf("nspawn: removed stale cgroup %s of dead pid %d", cg, pid)
		}
	}
}

// procsUnder returns the pids in cg and every cgroup below it.
func procsUnder(cg string) []int {
	var pids []int
	filepath.WalkDir(cg, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() || e.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for _, f := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(f); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// removeNspawnLeftovers deletes what nspawn leaves on the host when it is
// killed rather than exiting: its mount propagation directory and its lock
// files on the image. A lock file someone holds (another container on the
// same rootfs) is theirs and stays.
func removeNspawnLeftovers(name, rootfs string) error {
	var errs []error
	prop := "/run/systemd/nspawn/propagate/" + name
	if _, err := os.Stat(prop); err == nil {
		if err := os.RemoveAll(prop); err != nil {
			errs = append(errs, fmt.Errorf("removing nspawn's %s: %w", prop, err))
		}
	}
	locks := []string{filepath.Join(filepath.Dir(rootfs), ".#"+filepath.Base(rootfs)+".lck")}
	var st unix.Stat_t
	if unix.Stat(rootfs, &st) == nil {
		// systemd's make_lock_file_for: "inode-<st_dev>:<st_ino>", both
		// decimal.
		locks = append(locks, fmt.Sprintf("/run/systemd/nspawn/locks/inode-%d:%d", st.Dev, st.Ino))
	}
	for _, l := range locks {
		if err := removeUnheldLock(l); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// removeUnheldLock deletes the lock file path unless someone holds it.
// systemd's lockers re-check after flock that the file they locked is still
// linked, so deleting it under our own lock is safe for them.
func removeUnheldLock(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("opening lock %s: %w", path, err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		return nil // held: not ours to remove
	}
	defer unix.Flock(int(f.Fd()), unix.LOCK_UN)
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing unheld lock %s: %w", path, err)
	}
	return nil
}

// comm returns the command name of pid, or "".
func comm(pid int) string {
	st, _ := procfs.ReadStat(pid)
	return st.Comm
}

// describe lists pids with their command names.
func describe(pids []int) string {
	var s []string
	for _, p := range pids {
		s = append(s, fmt.Sprintf("%d (%s)", p, comm(p)))
	}
	return strings.Join(s, ", ")
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{fmt.Sprintf("[%d lines before]", len(lines)-n)}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
