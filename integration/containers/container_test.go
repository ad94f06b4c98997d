//go:build linux

package containers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/supervisor"
)

// Load of the reload test: 16 clients per mode (fresh connections,
// keep-alive), 10 reloads, each crossed by a slow request that must
// complete.
const (
	reloadClients = 16
	reloadCount   = 10
	// reloadSlow is the slow request's delay: long enough to span the
	// reload (a few milliseconds here), short enough for a quick test.
	reloadSlow = 500 * time.Millisecond
	// loadTimeout bounds the whole load run: about 10 s here.
	loadTimeout = 2 * time.Minute
)

// TestContainer runs "baton run" as PID 1 of real containers (podman,
// runc) and checks what a container runtime and an operator see.
func TestContainer(t *testing.T) {
	requirePodman(t)

	// podman kill --signal HUP under load: every reload starts exactly
	// one generation, the old one drains and exits 0, no zombie is ever
	// left, no request fails; podman stop then ends the container with
	// the worker's status, 0 after a clean drain, and nothing is left.
	t.Run("reload-under-load", func(t *testing.T) {
		start := time.Now()
		addr := freeAddr(t)
		c := runContainer(t, nil, "/bin/baton", "run", "--listen", "tcp://"+addr, "--drain-timeout", "10s",
			"--", "/bin/server", "-listen", addr, "-drain", "5s")
		gen := 1
		ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
		defer cancel()
		rep, err := loadgen.Run(ctx, loadgen.Config{
			URL:       "http://" + addr + "/",
			Clients:   reloadClients,
			Modes:     []loadgen.Mode{loadgen.Fresh, loadgen.KeepAlive},
			Upgrades:  reloadCount,
			SlowDelay: reloadSlow,
			Upgrade: func(ctx context.Context) error {
				if err := c.reloadHUP(ctx, gen); err != nil {
					return err
				}
				gen++
				return nil
			},
		})
		if err != nil {
			t.Fatalf("loadgen: %v", err)
		}
		var text strings.Builder
		rep.WriteText(&text)
		t.Logf("load through %d × podman kill --signal HUP:\n%s", reloadCount, text.String())
		for _, m := range rep.Modes {
			t.Logf("%s: %d requests, %d failed", m.Mode, m.Requests, m.Failures.Total())
		}
		if rep.Failed() || rep.FailedRequests != 0 || rep.Upgrades.OK != reloadCount {
			t.Errorf("%d of %d requests failed, %d of %d reloads ok, slow requests %+v; want 0 failed and every reload ok",
				rep.FailedRequests, rep.Requests, rep.Upgrades.OK, reloadCount, rep.Slow)
		}
		if len(rep.PIDs) != reloadCount+1 {
			t.Errorf("%d pids served (%v); want %d, one per generation", len(rep.PIDs), rep.PIDs, reloadCount+1)
		}
		if n := len(c.log.all(generationStarted)); n != reloadCount+1 {
			t.Errorf("%d generations started for %d SIGHUPs; want %d", n, reloadCount, reloadCount+1)
		}
		code := c.stopAndWait(t)
		t.Logf("podman stop: the container exited %d", code)
		if code != 0 {
			t.Errorf("the container exited %d after podman stop; want 0, the status of a worker that drained", code)
		}
		if ev := c.log.all(generationExited(gen)); len(ev) != 1 || ev[0]["status"] != "exit status 0" {
			t.Errorf("the last generation's exit: %v; want one, with exit status 0", ev)
		}
		t.Logf("container test (start, %d reloads under load, stop) took %v", reloadCount, time.Since(start).Round(time.Millisecond))
	})

	// A worker that leaves orphans behind: those that exit are reaped by
	// baton as PID 1 (no zombie), the one that runs on is stopped by
	// baton with SIGTERM on podman stop, and the container ends with the
	// worker's own exit status, 7.
	t.Run("orphans-and-exit-status", func(t *testing.T) {
		addr := freeAddr(t)
		marks := t.TempDir()
		// The worker runs as containerUser: it must write its marks.
		if err := os.Chmod(marks, 0o777); err != nil {
			t.Fatal(err)
		}
		const orphans = 3
		c := runContainer(t, []string{"--volume", marks + ":/marks"},
			"/bin/baton", "run", "--listen", "web=tcp://"+addr, "--drain-timeout", "5s",
			"--", "/bin/worker", "-socket", "web", "-orphans", fmt.Sprint(orphans), "-daemon",
			"-mark-dir", "/marks", "-exit-status", "7")
		ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
		defer cancel()
		// baton logs each orphan it reaps only at debug level, and its
		// status counts them: that count is asked for until it is there,
		// at a pace podman exec can keep (a tenth of a second each).
		var st *supervisor.Status
		for {
			var err error
			st, err = c.status(ctx)
			if err == nil && st.Reaped >= orphans {
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("baton did not reap the %d orphans: status %+v, %v", orphans, st, err)
			case <-time.After(100 * time.Millisecond):
			}
		}
		if st.PID != 1 {
			t.Errorf("baton status: the master is pid %d in the container; want 1", st.PID)
		}
		kids := c.children()
		if z := c.zombies(); len(z) > 0 {
			t.Errorf("zombies among the children of the container's PID 1: %+v", z)
		}
		// The worker, and the orphan that runs on.
		if len(kids) != 2 {
			t.Errorf("the container's PID 1 has %d children (%+v); want 2: the worker and the daemon it left", len(kids), kids)
		}
		if st.Reaped != orphans {
			t.Errorf("baton reaped %d orphans; want %d", st.Reaped, orphans)
		}
		code := c.stopAndWait(t)
		t.Logf("%d orphans reaped by PID 1; podman stop: the container exited %d", st.Reaped, code)
		if code != 7 {
			t.Errorf("the container exited %d after podman stop; want 7, the worker's status", code)
		}
		if ev := c.log.all(generationExited(1)); len(ev) != 1 || ev[0]["status"] != "exit status 7" {
			t.Errorf("the worker's exit: %v; want exit status 7", ev)
		}
		got, _ := filepath.Glob(filepath.Join(marks, "sigterm.*"))
		if len(got) != 1 {
			t.Errorf("%d orphans were stopped by SIGTERM (%v); want 1, the daemon, stopped by baton before it exited", len(got), got)
		}
	})

	// The worker is killed (SIGKILL, from the host) and baton, told never
	// to restart it, ends the container by itself with the worker's
	// status: 128+9.
	t.Run("crash-exit-status", func(t *testing.T) {
		addr := freeAddr(t)
		c := runContainer(t, nil, "/bin/baton", "run", "--listen", "tcp://"+addr, "--restart-limit", "-1",
			"--", "/bin/server", "-listen", addr)
		var worker int
		for _, k := range c.children() {
			if k.Comm == "server" && !k.Zombie() {
				worker = k.PID
			}
		}
		if worker == 0 {
			t.Fatalf("no worker among the children of the container's PID 1: %+v", c.children())
		}
		if err := syscall.Kill(worker, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
		defer cancel()
		code, err := c.exitCode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("worker killed: the container exited %d by itself", code)
		if code != 128+int(syscall.SIGKILL) {
			t.Errorf("the container exited %d after its worker was killed; want %d", code, 128+int(syscall.SIGKILL))
		}
		if left := c.leftovers(); len(left) > 0 {
			t.Errorf("processes of the container still run after it ended: %v", left)
		}
	})
}

// TestContainerKubernetesExample runs the command line of
// examples/kubernetes/deployment.yaml as it is (but for the port) in a
// container as the pod would: the binaries where the Containerfile puts
// them, the ConfigMap directory bind-mounted read-only where the
// Deployment mounts it, and updated on the host the kubelet's way; the
// liveness probe's command runs in the container as the kubelet would
// run it.
func TestContainerKubernetesExample(t *testing.T) {
	requirePodman(t)
	e := readExampleDeployment(t)
	watch := one(t, e.batonFlags, "watch")
	key := path.Base(watch)
	initial, ok := e.m.get(strconv.Itoa(e.m.doc("ConfigMap")) + ".data." + key)
	var cfg struct{ Greeting string }
	if !ok || json.Unmarshal([]byte(initial), &cfg) != nil {
		t.Fatalf("the example's ConfigMap has no %s with a greeting: %q", key, initial)
	}
	dir := filepath.Join(t.TempDir(), "configmap")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := kubeletWrite(dir, map[string]string{key: initial}); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	local := strings.NewReplacer("127.0.0.1:8080", addr, "://:8080", "://"+addr)
	command := []string{e.command[0]}
	for _, a := range e.args {
		command = append(command, local.Replace(a))
	}
	c := runContainer(t, []string{"--volume", dir + ":" + path.Dir(watch) + ":ro"}, command...)
	ctx, cancel := context.WithTimeout(context.Background(), podmanTimeout)
	defer cancel()
	first, err := c.log.wait(ctx, "generation 1 ready", generationReady(1))
	if err != nil {
		t.Fatal(err)
	}
	if err := expectBody(ctx, addr, cfg.Greeting, first.int("pid")); err != nil {
		t.Fatal(err)
	}
	live := e.m.list(e.doc + containerPrefix + ".livenessProbe.exec.command")
	if out, err := podman(ctx, append([]string{"exec", c.name}, live...)...); err != nil {
		t.Errorf("the liveness probe's command in the container: %v", err)
	} else {
		t.Logf("liveness probe %q:\n%s", live, out)
	}
	for i, greeting := range []string{"bonjour", "hallo"} {
		gen := i + 1
		if err := kubeletWrite(dir, map[string]string{key: fmt.Sprintf("{\"greeting\": %q}\n", greeting)}); err != nil {
			t.Fatal(err)
		}
		ready, err := c.log.wait(ctx, fmt.Sprintf("generation %d ready", gen+1), generationReady(gen+1))
		if err != nil {
			t.Fatal(err)
		}
		if ev, err := c.log.wait(ctx, fmt.Sprintf("generation %d exited", gen), generationExited(gen)); err != nil || ev["status"] != "exit status 0" {
			t.Fatalf("generation %d: %v, %v; want exit status 0 after its drain", gen, ev, err)
		}
		if err := expectBody(ctx, addr, greeting, ready.int("pid")); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(c.log.all(generationStarted)); n != 3 {
		t.Errorf("%d generations started for 2 ConfigMap updates; want 3", n)
	}
	code := c.stopAndWait(t)
	t.Logf("podman stop: the container exited %d", code)
	if code != 0 {
		t.Errorf("the container exited %d after podman stop; want 0", code)
	}
}

// reloadHUP sends SIGHUP to the container (podman kill) while generation
// gen serves, and returns once generation gen+1 serves and gen has
// drained and exited 0, with no zombie left behind.
func (c *container) reloadHUP(ctx context.Context, gen int) error {
	if err := c.kill(ctx, "HUP"); err != nil {
		return err
	}
	if _, err := c.log.wait(ctx, fmt.Sprintf("generation %d ready", gen+1), generationReady(gen+1)); err != nil {
		return err
	}
	ev, err := c.log.wait(ctx, fmt.Sprintf("generation %d exited", gen), generationExited(gen))
	if err != nil {
		return err
	}
	if ev["status"] != "exit status 0" {
		return fmt.Errorf("generation %d exited with %q; want exit status 0 after its drain", gen, ev["status"])
	}
	if n := len(c.log.all(generationStarted)); n != gen+1 {
		return fmt.Errorf("%d generations started after %d SIGHUPs; want %d", n, gen, gen+1)
	}
	// The old generation has been reaped (baton logs its exit after its
	// wait) and nothing else of baton's is exiting now.
	if z := c.zombies(); len(z) > 0 {
		return fmt.Errorf("zombies among the children of the container's PID 1: %+v", z)
	}
	return nil
}

// stopAndWait is "podman stop", and returns the container's exit status
// once it has ended; it fails the test if a process of the container is
// left.
func (c *container) stopAndWait(t *testing.T) int {
	t.Helper()
	c.children() // the last look at what runs in it
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(stopTimeout)*time.Second+podmanTimeout)
	defer cancel()
	if err := c.stop(ctx); err != nil {
		t.Fatal(err)
	}
	code, err := c.exitCode(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ev := c.log.all(func(e logEvent) bool { return e.master() && e.msg() == "stopping" }); len(ev) != 1 {
		t.Errorf("baton logged %d stops; want one, for podman stop's SIGTERM", len(ev))
	}
	if left := c.leftovers(); len(left) > 0 {
		t.Errorf("processes of the container still run after it ended: %v", left)
	}
	return code
}
