//go:build linux

package containers

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/procfs"
)

// kubeletWrite updates dir, a ConfigMap volume, exactly as the kubelet's
// AtomicWriter does (pkg/volume/util/atomic_writer.go): the files go into
// a new timestamped directory ..YYYY_MM_DD_HH_MM_SS.RANDOM; a symlink
// ..data_tmp to it is renamed over ..data (the one atomic step); each
// key is a symlink KEY -> ..data/KEY, made the first time; then the old
// timestamped directory is removed. A reader of dir/KEY sees the old file
// or the new one, never neither.
func kubeletWrite(dir string, files map[string]string) error {
	const dataLink, tmpLink = "..data", "..data_tmp"
	old, err := os.Readlink(filepath.Join(dir, dataLink))
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	ts, err := os.MkdirTemp(dir, time.Now().UTC().Format("..2006_01_02_15_04_05."))
	if err != nil {
		return err
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(ts, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	if err := os.Chmod(ts, 0o755); err != nil {
		return err
	}
	if err := os.Symlink(filepath.Base(ts), filepath.Join(dir, tmpLink)); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(dir, tmpLink), filepath.Join(dir, dataLink)); err != nil {
		return err
	}
	for name := range files {
		p := filepath.Join(dir, name)
		if _, err := os.Lstat(p); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join(dataLink, name), p); err != nil {
				return err
			}
		}
	}
	if old != "" {
		return os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// configUpdates is how many ConfigMap updates are made under load.
const configUpdates = 5

// quietPeriod is how long nothing may happen after the last update: four
// looks of baton's --watch (every 500ms) at a file that no longer
// changes.
const quietPeriod = 2 * time.Second

// TestConfigMapWatch runs the command line of examples/kubernetes
// (deployment.yaml; the port, the mount directory and the binaries
// replaced by the test's) on the host, and updates its ConfigMap
// directory the kubelet's way, under load: each update makes exactly one
// reload, the new generation answers with the new configuration, the old
// one exits 0 after its drain, no request fails; a configuration the
// worker refuses makes one failed reload and the old generation serves
// on; nothing reloads when nothing changes.
func TestConfigMapWatch(t *testing.T) {
	e := readExampleDeployment(t)
	watch := one(t, e.batonFlags, "watch")
	mountDir := filepath.Dir(watch)
	dir := filepath.Join(t.TempDir(), "greeter")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	key := filepath.Base(watch)
	config := func(greeting string) map[string]string {
		return map[string]string{key: fmt.Sprintf("{\"greeting\": %q}\n", greeting)}
	}
	if err := kubeletWrite(dir, config("v0")); err != nil {
		t.Fatal(err)
	}

	// The example's command line, on this machine.
	addr := freeAddr(t)
	_, port, _ := strings.Cut(addr, ":")
	local := strings.NewReplacer(
		"127.0.0.1:8080", addr,
		"://:8080", "://"+addr,
		mountDir+"/", dir+"/",
	)
	var args []string
	for _, a := range e.batonFlags {
		args = append(args, local.Replace(a))
	}
	// Its own control socket, in a directory only we may enter (as baton
	// requires), rather than the default one other tests may share.
	control := filepath.Join(t.TempDir(), "run", "control.sock")
	args = append([]string{"run", "--control", control}, args...)
	args = append(args, "--", greeterBin)
	for _, a := range e.program[1:] {
		args = append(args, local.Replace(a))
	}
	t.Logf("baton %s (port %s)", strings.Join(args, " "), port)

	cmd := exec.Command(batonBin, args...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	log := followLog(r)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			t.Errorf("baton run still runs at the end of the test: stopping it")
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		r.Close()
		if t.Failed() {
			t.Logf("output of baton run:\n%s", log.text())
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), loadTimeout)
	defer cancel()
	first, err := log.wait(ctx, "the first generation ready", generationReady(1))
	if err != nil {
		t.Fatal(err)
	}
	pids := []int{first.int("pid")}
	if err := expectBody(ctx, addr, "v0", first.int("pid")); err != nil {
		t.Fatal(err)
	}
	// The probes' target answers through the shared socket, and the
	// liveness probe's command answers.
	if err := expectStatus(ctx, "http://"+addr+exampleHealthURL, http.StatusOK); err != nil {
		t.Errorf("readiness probe: %v", err)
	}
	if out, err := exec.CommandContext(ctx, batonBin, "status", "--control", control).CombinedOutput(); err != nil {
		t.Errorf("liveness probe, baton status: %v\n%s", err, out)
	}

	gen := 1
	// update writes greeting the kubelet's way and waits until the
	// generation after gen serves it and gen has drained and exited 0.
	update := func(ctx context.Context, greeting string) error {
		if err := kubeletWrite(dir, config(greeting)); err != nil {
			return err
		}
		ready, err := log.wait(ctx, fmt.Sprintf("generation %d ready", gen+1), generationReady(gen+1))
		if err != nil {
			return err
		}
		exited, err := log.wait(ctx, fmt.Sprintf("generation %d exited", gen), generationExited(gen))
		if err != nil {
			return err
		}
		if exited["status"] != "exit status 0" {
			return fmt.Errorf("generation %d exited with %q; want exit status 0 after its drain", gen, exited["status"])
		}
		if n := len(log.all(generationStarted)); n != gen+1 {
			return fmt.Errorf("%d generations started after %d updates; want %d: one reload per update", n, gen, gen+1)
		}
		gen++
		pids = append(pids, ready.int("pid"))
		// The old generation is gone: whoever answers now is the new one.
		return expectBody(ctx, addr, greeting, ready.int("pid"))
	}
	start := time.Now()
	rep, err := loadgen.Run(ctx, loadgen.Config{
		URL:       "http://" + addr + "/",
		Clients:   reloadClients,
		Modes:     []loadgen.Mode{loadgen.Fresh, loadgen.KeepAlive},
		Upgrades:  configUpdates,
		SlowDelay: -1, // the greeter has no slow requests
		Upgrade: func(ctx context.Context) error {
			return update(ctx, fmt.Sprintf("v%d", gen))
		},
	})
	if err != nil {
		t.Fatalf("loadgen: %v", err)
	}
	var text strings.Builder
	rep.WriteText(&text)
	t.Logf("load through %d ConfigMap updates (%v):\n%s", configUpdates, time.Since(start).Round(time.Millisecond), text.String())
	for _, m := range rep.Modes {
		t.Logf("%s: %d requests, %d failed", m.Mode, m.Requests, m.Failures.Total())
	}
	if rep.Failed() || rep.FailedRequests != 0 || rep.Upgrades.OK != configUpdates {
		t.Fatalf("%d of %d requests failed, %d of %d updates reloaded: %v; want 0 failed and every update reloaded",
			rep.FailedRequests, rep.Requests, rep.Upgrades.OK, configUpdates, rep.Upgrades.Errors)
	}

	// A configuration the worker refuses: one reload, which fails; the
	// old generation serves on with the old configuration.
	if err := kubeletWrite(dir, config("")); err != nil {
		t.Fatal(err)
	}
	failed, err := log.wait(ctx, fmt.Sprintf("generation %d exited", gen+1), generationExited(gen+1))
	if err != nil {
		t.Fatal(err)
	}
	if failed["status"] != "exit status 1" || len(log.all(generationReady(gen+1))) != 0 {
		t.Errorf("generation %d, with the bad configuration: %v; want exit status 1, never ready", gen+1, failed)
	}
	if err := expectBody(ctx, addr, fmt.Sprintf("v%d", gen-1), pids[len(pids)-1]); err != nil {
		t.Errorf("after a bad configuration: %v; want the old generation serving", err)
	}
	serving := gen
	gen++ // the failed one used a number
	// And a good one again, after which nothing changes.
	if err := kubeletWrite(dir, config("last")); err != nil {
		t.Fatal(err)
	}
	ready, err := log.wait(ctx, fmt.Sprintf("generation %d ready", gen+1), generationReady(gen+1))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := log.wait(ctx, fmt.Sprintf("generation %d exited", serving), generationExited(serving)); err != nil {
		t.Fatal(err)
	}
	if err := expectBody(ctx, addr, "last", ready.int("pid")); err != nil {
		t.Error(err)
	}
	pids = append(pids, ready.int("pid"))
	time.Sleep(quietPeriod) // nothing to wait for: the point is that nothing comes
	if n := len(log.all(generationStarted)); n != gen+1 {
		t.Errorf("%d generations started for %d ConfigMap updates; want %d: a reload without a change", n, configUpdates+2, gen+1)
	}
	if changes := strings.Count(log.text(), "changed: reloading"); changes != configUpdates+2 {
		t.Errorf("baton saw %d changes of %s; want %d", changes, key, configUpdates+2)
	}

	// SIGTERM, as the kubelet sends after preStop: the worker drains,
	// baton exits with its status, 0, and no worker is left.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		done <- err
		if err != nil {
			t.Errorf("baton run after SIGTERM: %v; want exit status 0", err)
		}
	case <-ctx.Done():
		t.Fatalf("baton run has not exited after SIGTERM")
	}
	for _, pid := range pids {
		if procfs.Alive(pid) {
			t.Errorf("worker pid %d still runs after baton run exited", pid)
		}
	}
}

// expectBody asks addr for / on a new connection and checks that
// greeting answered, from pid.
func expectBody(ctx context.Context, addr, greeting string, pid int) error {
	want := fmt.Sprintf("%s pid=%d\n", greeting, pid)
	body, err := get(ctx, "http://"+addr+"/")
	if err != nil {
		return err
	}
	if body != want {
		return fmt.Errorf("GET / answered %q; want %q", body, want)
	}
	return nil
}

func expectStatus(ctx context.Context, url string, code int) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != code {
		return fmt.Errorf("GET %s: %s; want %d", url, resp.Status, code)
	}
	return nil
}

// noKeepAlive sends every request on a new connection, so that it goes to
// whichever generation accepts now, and never retries.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true, MaxIdleConns: -1}}

func get(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := noKeepAlive.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return string(b), nil
}
