//go:build linux

package containers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/supervisor"
	"golang.org/x/sys/unix"
)

// podmanGlobal are the flags every podman command gets (set by TestMain):
//
//   - --root, --runroot, --tmpdir in the test's temporary directory: the
//     tests' containers share no state with any other podman user of the
//     machine, cannot collide with them, and leave nothing behind in
//     /var/lib/containers; every run starts from a fresh store, as CI
//     does on a new machine (it takes podman well under a second).
//   - --runtime runc, not podman's default crun: crun 1.8.1 (Debian 12)
//     refuses to create any container on a host with hybrid cgroups whose
//     cgroup2 hierarchy has a controller ("cgroups in hybrid mode not
//     supported, drop all controllers from cgroupv2"), which is this
//     machine kind (hugetlb there), even with --cgroups=disabled; runc
//     1.1.5 runs them.
var podmanGlobal []string

// setPodmanStore points podmanGlobal at a store in dir.
func setPodmanStore(dir string) {
	podmanGlobal = []string{
		"--root", filepath.Join(dir, "root"),
		"--runroot", filepath.Join(dir, "run"),
		"--tmpdir", filepath.Join(dir, "tmp"),
		"--runtime", "runc",
	}
}

// containerUser is the uid:gid the containers run as: distroless's
// "nonroot", as in examples/kubernetes. baton needs no privilege as PID 1.
const containerUser = "65532:65532"

// nprocMax caps the RLIMIT_NPROC the containers ask for. podman does not
// give a container more than the limit of its conmon, and here it sets
// conmon's to 32768 (seen in /proc/PID/limits of conmon) when it cannot
// raise its own: runc then fails with EPERM on anything higher.
const nprocMax = 32768

// Bounds of the steps of a container test. podman commands take tens of
// milliseconds here; a first start, which sets up podman's storage, a
// second or two.
const (
	podmanTimeout = 30 * time.Second
	// stopTimeout is podman stop's -t: how long baton has after SIGTERM
	// before podman sends SIGKILL. Above the tests' --drain-timeout, so
	// that a stop is always baton's own.
	stopTimeout = 20
)

// requirePodman fails or skips the test (see requireIntegration) unless
// podman and runc are there and we are root: a rootless podman has no
// host network namespace to share and its own uid mapping.
func requirePodman(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		requireIntegration(t, "the container tests need root (rootful podman)")
	}
	for _, p := range []string{"podman", "runc"} {
		if _, err := exec.LookPath(p); err != nil {
			requireIntegration(t, fmt.Sprintf("the container tests need %s on PATH (Debian: apt-get install podman runc; make deps does it)", p))
		}
	}
}

// podman runs a podman command and returns its standard output; its
// standard error (warnings, say) is only part of the error.
func podman(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "podman", append(append([]string(nil), podmanGlobal...), args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %w\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out), nil
}

// container is a container started by "podman run --rootfs" with baton as
// its PID 1, attached: podman run returns when the container has ended,
// with its exit status, and passes on its output.
type container struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  *masterLog // the container's stdout and stderr: baton's and the workers'
	done chan struct{}
	err  error // of podman run, once done is closed

	hostPID int // the container's PID 1, baton, as the host sees it
	// seen are the processes of the container seen so far (host pid →
	// start time): none may be left once it has ended.
	seen map[int]uint64
}

var containerSeq atomic.Int32

// runContainer starts command (baton, at /bin/baton or /baton, and its
// arguments) as PID 1 of a new container, on the host's network (the
// tests' load goes to 127.0.0.1), as a non-root user, on a read-only root
// file system of rootfs, and waits until its first generation is ready.
// extra are more flags of podman run. The container is removed when the
// test ends.
func runContainer(t *testing.T, extra []string, command ...string) *container {
	t.Helper()
	var nofile unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile); err != nil {
		t.Fatal(err)
	}
	var nproc unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NPROC, &nproc); err != nil {
		t.Fatal(err)
	}
	c := &container{
		t:    t,
		name: fmt.Sprintf("baton-test-%d-%d", os.Getpid(), containerSeq.Add(1)),
		done: make(chan struct{}),
		seen: map[int]uint64{},
	}
	run := append(append([]string(nil), podmanGlobal...), "run", "--name", c.name,
		"--network", "host", "--read-only", "--user", containerUser,
		// podman's default limits (nofile 1048576, nproc: its own) are
		// above what this process may grant without CAP_SYS_RESOURCE:
		// ask for ours.
		"--ulimit", fmt.Sprintf("nofile=%d:%d", nofile.Cur, nofile.Max),
		"--ulimit", fmt.Sprintf("nproc=%d:%d", min(nproc.Cur, nprocMax), min(nproc.Max, nprocMax)),
	)
	run = append(run, extra...)
	run = append(append(run, "--rootfs", rootfs), command...)
	c.cmd = exec.Command("podman", run...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	c.cmd.Stdout, c.cmd.Stderr = w, w
	if err := c.cmd.Start(); err != nil {
		r.Close()
		w.Close()
		t.Fatalf("podman run: %v", err)
	}
	w.Close()
	c.log = followLog(r)
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	t.Cleanup(func() { c.remove(r) })

	ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
	defer cancel()
	if _, err := c.log.wait(ctx, "the first generation ready", generationReady(1)); err != nil {
		t.Fatalf("container %s: %v", c.name, err) // its output follows, from remove
	}
	out, err := podman(ctx, "inspect", "--format", "{{.State.Pid}}", c.name)
	if err != nil {
		t.Fatal(err)
	}
	if c.hostPID, err = strconv.Atoi(strings.TrimSpace(out)); err != nil || c.hostPID <= 0 {
		t.Fatalf("podman inspect: the container's pid is %q", out)
	}
	c.note(c.hostPID)
	return c
}

// remove ends the container if it still runs, and removes it.
func (c *container) remove(r *os.File) {
	ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
	defer cancel()
	select {
	case <-c.done:
	default:
		if c.log.hasEnded() {
			// Its processes have all exited: podman run is returning.
			select {
			case <-c.done:
			case <-ctx.Done():
			}
		}
	}
	select {
	case <-c.done:
	default:
		c.t.Errorf("container %s still runs at the end of the test: removing it", c.name)
		podman(ctx, "rm", "--force", "--time", "0", c.name)
		select {
		case <-c.done:
		case <-ctx.Done():
			c.t.Errorf("podman run of %s has not returned %v after podman rm --force", c.name, podmanTimeout)
			c.cmd.Process.Kill()
			<-c.done
		}
	}
	// The log ends once every process holding the pipe's write end has
	// exited: podman run, and anything it left running with it.
	if err := c.log.ended(ctx); err != nil {
		c.t.Errorf("container %s: %v", c.name, err)
	}
	r.Close()
	if _, err := podman(ctx, "rm", "--force", c.name); err != nil {
		c.t.Errorf("removing the container: %v", err)
	}
	if c.t.Failed() {
		c.t.Logf("output of container %s:\n%s", c.name, c.log.text())
	}
}

// note records a process of the container.
func (c *container) note(pid int) {
	if st, err := procfs.ReadStat(pid); err == nil {
		c.seen[pid] = st.StartTime
	}
}

// children returns the processes whose parent is baton, and records them.
func (c *container) children() []procfs.Stat {
	kids, err := procfs.Children(c.hostPID)
	if err != nil {
		c.t.Fatalf("the children of the container's PID 1: %v", err)
	}
	for _, k := range kids {
		c.seen[k.PID] = k.StartTime
	}
	return kids
}

// zombies returns baton's children that have exited and not been reaped.
// A child is a zombie for the moment between its exit and baton's wait:
// callers look when no child of baton is meant to be exiting.
func (c *container) zombies() []procfs.Stat {
	var z []procfs.Stat
	for _, k := range c.children() {
		if k.Zombie() {
			z = append(z, k)
		}
	}
	return z
}

// kill sends sig to the container's PID 1 the runtime's way.
func (c *container) kill(ctx context.Context, sig string) error {
	_, err := podman(ctx, "kill", "--signal", sig, c.name)
	return err
}

// status is "baton status --json" run inside the container.
func (c *container) status(ctx context.Context) (*supervisor.Status, error) {
	out, err := podman(ctx, "exec", c.name, "/bin/baton", "status", "--json")
	if err != nil {
		return nil, err
	}
	var st supervisor.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("baton status --json: %w\n%s", err, out)
	}
	return &st, nil
}

// stop is "podman stop": SIGTERM to baton, SIGKILL after stopTimeout.
func (c *container) stop(ctx context.Context) error {
	_, err := podman(ctx, "stop", "--time", strconv.Itoa(stopTimeout), c.name)
	return err
}

// exitCode waits for the container to end and returns its exit status as
// podman run returned it, checked against what podman inspect says.
func (c *container) exitCode(ctx context.Context) (int, error) {
	select {
	case <-c.done:
	case <-ctx.Done():
		return -1, fmt.Errorf("container %s has not ended: %w", c.name, ctx.Err())
	}
	code := c.cmd.ProcessState.ExitCode()
	var xerr *exec.ExitError
	if c.err != nil && !errors.As(c.err, &xerr) {
		return -1, fmt.Errorf("podman run: %w", c.err)
	}
	out, err := podman(ctx, "inspect", "--format", "{{.State.ExitCode}}", c.name)
	if err != nil {
		return -1, err
	}
	if got := strings.TrimSpace(out); got != strconv.Itoa(code) {
		return -1, fmt.Errorf("podman run exited %d, podman inspect says the container exited %s", code, got)
	}
	return code, nil
}

// leftovers returns the processes seen in the container that still run
// (the same pid and start time) after it has ended.
func (c *container) leftovers() []int {
	var left []int
	for pid, start := range c.seen {
		if st, err := procfs.ReadStat(pid); err == nil && st.StartTime == start && !st.Zombie() {
			left = append(left, pid)
		}
	}
	return left
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
