//go:build linux

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/proctest"
	"github.com/batonhq/baton/supervisor"
)

// The test binary is baton: re-executed through proctest's TestMain
// dispatch as the helper "baton", it runs main's run with its arguments.
// The master of "baton run", its trampoline and the demo server it runs
// are all this binary, dispatched here again (proctest's variable stays
// set across their execs).
func init() {
	proctest.Register("baton", func() {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	})
}

func TestMain(m *testing.M) {
	// The processes this test binary plays exit at once under the race
	// detector, which otherwise sleeps a second at exit (GORACE
	// atexit_sleep_ms): a worker would outlive a short drain timeout.
	if !strings.Contains(os.Getenv("GORACE"), "atexit_sleep_ms") {
		os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	}
	proctest.Main(m)
}

// batonRun starts "baton run --control CONTROL ARGS..." as a process of
// its own and waits until its first generation serves.
func batonRun(t *testing.T, control string, args ...string) *proctest.Proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"run", "--control", control}, args...)...)
	p := proctest.StartCommand(t, "baton", cmd)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := supervisor.Call(ctx, control, supervisor.CmdStatus)
		cancel()
		if err == nil && resp.Status != nil && resp.Status.State == supervisor.StateServing {
			return p
		}
		if st, _ := p.Wait(0); st != nil || time.Now().After(deadline) {
			t.Fatalf("baton run: not serving (%+v, %v)\n%s", resp.Status, err, p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// baton runs the command in this process, as a person would in a shell.
func batonIn(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(context.Background(), args, &o, &e)
	return code, o.String(), e.String()
}

func loopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// What a person sees of "baton status", of "baton reload" that fails, of a
// reload asked during another, and of "baton stop".
func TestReloadAsSeen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	control := filepath.Join(dir, "run", "control.sock")
	addr := loopbackAddr(t)
	mode := filepath.Join(dir, "mode")
	script := filepath.Join(dir, "worker.sh")
	os.WriteFile(mode, []byte("ok"), 0o644)
	os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
case "$(cat %s)" in
exit) echo "worker: config error: line 3: unknown directive" >&2; exit 3;;
hang) exec sleep 600;;
esac
exec %s demo-server -listen %s -drain 5s -idle-grace 1s
`, mode, os.Args[0], addr)), 0o755)
	metrics := loopbackAddr(t)
	p := batonRun(t, control, "--listen", "tcp://"+addr, "--upgrade-timeout", "5s", "--metrics", metrics, "--", script)

	code, out, errs := batonIn("status", "--control", control)
	if code != exitOK || !strings.Contains(out, "gen 1") || !strings.Contains(out, "serving") || !strings.Contains(out, "listen      tcp://"+addr) {
		t.Errorf("baton status = %d\n%s%s\nwant generation 1 serving on %s", code, out, errs, addr)
	}

	os.WriteFile(mode, []byte("exit"), 0o644)
	code, _, errs = batonIn("reload", "--control", control)
	if code != exitFailed || !strings.Contains(errs, "reload failed") || !strings.Contains(errs, "config error: line 3") || !strings.Contains(errs, "still serves") {
		t.Errorf("baton reload of a failing worker = %d\n%s\nwant exit 1 with the reason, the stderr lines and a hint", code, errs)
	}
	// The failure is counted, in the status and in the metrics.
	code, out, errs = batonIn("status", "--json", "--control", control)
	var st supervisor.Status
	if err := json.Unmarshal([]byte(out), &st); code != exitOK || err != nil || st.Upgrades.Failed != 1 || st.Upgrades.OK != 0 ||
		!strings.Contains(st.Upgrades.LastError, "exited before it was ready") || len(st.Generations) != 1 || st.Generations[0].RSS <= 0 {
		t.Errorf("baton status --json = %d, %v\n%s%s\nwant 1 failed upgrade with its error, one generation with its RSS", code, err, out, errs)
	}
	code, out, _ = batonIn("status", "--control", control)
	if code != exitOK || !strings.Contains(out, "reloads     0 ok, 1 failed; last failure at") {
		t.Errorf("baton status = %d\n%s\nwant the failed reload counted", code, out)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + metrics + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Type") != supervisor.MetricsContentType || !strings.Contains(string(body), `baton_upgrades_total{result="failed"} 1`+"\n") {
		t.Errorf("GET /metrics: %s, %q\n%s\nwant the failed upgrade counted", resp.Status, resp.Header.Get("Content-Type"), body)
	}

	// One reload hangs; another asked meanwhile is refused at once, by
	// its code, with the hint for it.
	os.WriteFile(mode, []byte("hang"), 0o644)
	hung := make(chan int, 1)
	go func() {
		code, _, _ := batonIn("reload", "--control", control)
		hung <- code
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := supervisor.Call(context.Background(), control, supervisor.CmdStatus)
		if err == nil && resp.Status != nil && resp.Status.State == supervisor.StateReloading {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no reload under way after 10s: %+v, %v", resp.Status, err)
		}
	}
	code, _, errs = batonIn("reload", "--control", control)
	if code != exitFailed || !strings.Contains(errs, "a reload is already in progress") || !strings.Contains(errs, "wait for it") {
		t.Errorf("baton reload during another = %d\n%s\nwant exit 1, the reason and the hint to wait", code, errs)
	}
	select {
	case code := <-hung:
		if code != exitFailed {
			t.Errorf("the hanging reload exited %d; want %d at the upgrade timeout", code, exitFailed)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the hanging reload did not end within 30s (upgrade timeout 5s)")
	}

	code, out, errs = batonIn("stop", "--control", control)
	if code != exitOK || !strings.Contains(errs, "stopped") {
		t.Errorf("baton stop = %d\n%s%s", code, out, errs)
	}
	if st, err := p.Wait(30 * time.Second); err != nil && st == nil {
		t.Errorf("baton run after baton stop: %v", err)
	} else if st.ExitCode() != 0 {
		t.Errorf("baton run exited %d after baton stop; want 0\n%s", st.ExitCode(), p.Output())
	}
}

// A first generation that fails makes "baton run" exit 3 with the reason
// and the worker's last lines of stderr.
func TestRunFirstGenerationFailsAsSeen(t *testing.T) {
	t.Parallel()
	control := filepath.Join(t.TempDir(), "run", "control.sock")
	cmd := exec.Command(os.Args[0], "run", "--listen", "tcp://127.0.0.1:0", "--control", control, "--",
		"/bin/sh", "-c", `echo "worker: config error: no such upstream" >&2; exit 3`)
	p := proctest.StartCommand(t, "baton", cmd)
	st, err := p.Wait(time.Minute)
	if err != nil && st == nil {
		t.Fatal(err)
	}
	if out := p.Output(); st.ExitCode() != exitNoStart || !strings.Contains(out, "exit status 3") || !strings.Contains(out, "no such upstream") {
		t.Errorf("baton run with a failing worker: exit %d\n%s\nwant exit 3 with the reason and its stderr", st.ExitCode(), out)
	}
}

// "baton run" says what to do when the control socket answers (another
// master) or the address is taken, from the errors' types.
func TestRunCannotStartAsSeen(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "run")
	os.Mkdir(dir, 0o700)
	control := filepath.Join(dir, "control.sock")
	ln, err := net.Listen("unix", control)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	code, _, errs := batonIn("run", "--control", control, "--listen", "tcp://127.0.0.1:0", "--", "/bin/true")
	if code != exitNoStart || !strings.Contains(errs, "another master?") || !strings.Contains(errs, `stop it first ("baton stop")`) {
		t.Errorf("baton run beside a live control socket = %d\n%s\nwant exit 3 and the hint to stop the other master", code, errs)
	}

	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	other := filepath.Join(dir, "other.sock")
	code, _, errs = batonIn("run", "--control", other, "--listen", "tcp://"+busy.Addr().String(), "--", "/bin/true")
	if code != exitNoStart || !strings.Contains(errs, "address already in use") || !strings.Contains(errs, "another process listens there") {
		t.Errorf("baton run on a taken address = %d\n%s\nwant exit 3 and the hint", code, errs)
	}
	if _, err := os.Lstat(other); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("baton run that could not start left its control socket: %v", err)
	}
}

// What a person sees of "baton reload --master" when the master's new
// binary is broken: the reason, and that the master runs on as it was.
func TestReloadMasterRefusedAsSeen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	control := filepath.Join(dir, "run", "control.sock")
	addr := loopbackAddr(t)
	bin := filepath.Join(dir, "bin", "baton")
	proctest.CopyExecutable(t, os.Args[0], bin)
	cmd := exec.Command(bin, "run", "--control", control, "--listen", "tcp://"+addr, "--", os.Args[0], "demo-server", "-listen", addr, "-drain", "5s")
	p := proctest.StartCommand(t, "baton", cmd)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		resp, err := supervisor.Call(context.Background(), control, supervisor.CmdStatus)
		if err == nil && resp.Status != nil && resp.Status.State == supervisor.StateServing {
			break
		}
		if st, _ := p.Wait(0); st != nil || time.Now().After(deadline) {
			t.Fatalf("baton run: not serving (%+v, %v)\n%s", resp.Status, err, p.Output())
		}
	}
	// A deploy that put a broken file where the master's binary was: a
	// new file renamed over it, as a package manager does.
	if err := os.WriteFile(bin+".new", []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(bin+".new", bin); err != nil {
		t.Fatal(err)
	}
	code, _, errs := batonIn("reload", "--master", "--control", control)
	if code != exitFailed || !strings.Contains(errs, "the master's upgrade failed") || !strings.Contains(errs, "the master runs on as it was") {
		t.Errorf("baton reload --master with a broken binary = %d\n%s\nwant exit 1, the reason and the hint", code, errs)
	}
	resp, err := supervisor.Call(context.Background(), control, supervisor.CmdStatus)
	if err != nil || resp.Status == nil || resp.Status.State != supervisor.StateServing {
		t.Errorf("after the refused exec: %+v, %v; want the master serving on", resp.Status, err)
	}
	if code, _, errs := batonIn("stop", "--control", control); code != exitOK {
		t.Errorf("baton stop = %d\n%s", code, errs)
	}
	if st, err := p.Wait(30 * time.Second); err != nil && st == nil {
		t.Errorf("baton run after baton stop: %v", err)
	}
}
