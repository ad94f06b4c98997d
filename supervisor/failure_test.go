//go:build linux

package supervisor_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton/supervisor"
)

// A new generation that exits at once, is never ready, or cannot be run
// leaves the old one serving; "baton reload" exits 1 and says why, with
// the new generation's last lines of stderr.
func TestFailedReloadKeepsServing(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	mode := filepath.Join(dir, "mode")
	script := filepath.Join(dir, "worker.sh")
	os.WriteFile(mode, []byte("ok"), 0o644)
	os.WriteFile(script, []byte(fmt.Sprintf(`#!/bin/sh
case "$(cat %s)" in
exit) echo "worker: config error: line 3: unknown directive" >&2; exit 3;;
hang) echo "worker: waiting for a database that never comes" >&2; exec sleep 600;;
esac
exec %s demo-server -listen %s -drain 5s -idle-grace 2s
`, mode, testBin, addr)), 0o755)
	m := startMaster(t, nil, []string{"--listen", "tcp://" + addr, "--upgrade-timeout", "2s"}, []string{script}, nil)
	first, err := get(addr)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		mode, reason, stderr string
	}{
		{"exit", "exited before it was ready: exit status 3", "config error: line 3"},
		{"hang", "not ready within 2s", "never comes"},
		{"noexec", "permission denied", ""},
	}
	for _, tc := range cases {
		if tc.mode == "noexec" {
			os.Chmod(script, 0o644)
		} else {
			os.WriteFile(mode, []byte(tc.mode), 0o644)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		res, code, stderr := m.reload(ctx)
		cancel()
		if code != 1 || res.OK || !strings.Contains(res.Error, tc.reason) {
			t.Errorf("%s: baton reload --json = exit %d, %+v; want exit 1 and an error with %q\nstderr: %s", tc.mode, code, res, tc.reason, stderr)
		}
		if tc.stderr != "" && !strings.Contains(strings.Join(res.Stderr, "\n"), tc.stderr) {
			t.Errorf("%s: reported stderr %q; want the new generation's %q", tc.mode, res.Stderr, tc.stderr)
		}
		if now, err := get(addr); err != nil || now != first {
			t.Errorf("%s: after the failed reload the service answers %q, %v; want %q from the old generation", tc.mode, now, err, first)
		}
		if _, err := m.waitServing(1, 10*time.Second); err != nil {
			t.Errorf("%s: %v", tc.mode, err)
		}
	}
	// What a client hears, in a process of its own (what a person sees
	// of it is tested in cmd/baton): the code, the reason, the stderr
	// lines, and the old generation that serves on.
	os.Chmod(script, 0o755)
	os.WriteFile(mode, []byte("exit"), 0o644)
	code, out := m.call(supervisor.CmdReload)
	var resp supervisor.Response
	json.Unmarshal([]byte(out), &resp)
	if code != 1 || resp.Code != supervisor.CodeGenerationFailed || resp.Result == nil ||
		!strings.Contains(resp.Error, "exited before it was ready") || !strings.Contains(strings.Join(resp.Result.Stderr, "\n"), "config error: line 3") || resp.Result.OldPID == 0 {
		t.Errorf("reload: exit %d\n%s\nwant a failure with code generation_failed, the reason, the stderr lines and the old pid", code, out)
	}
	// And a good one after all that.
	os.WriteFile(mode, []byte("ok"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res, code, stderr := m.reload(ctx); code != 0 || !res.OK || res.Gen != 6 {
		t.Errorf("baton reload after the failures = exit %d, %+v, %s; want generation 6 serving", code, res, stderr)
	}
	// The old generation may take one more connection from the shared
	// queue in the moment between the new one's READY=1 and its own stop
	// signal: the new pid answers soon after, never an error.
	now, err := get(addr)
	for deadline := time.Now().Add(5 * time.Second); err == nil && now == first && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		now, err = get(addr)
	}
	if err != nil || now == first {
		t.Errorf("after the good reload the service answers %q, %v; want a new pid", now, err)
	}
}

// A first generation that fails stops the master with exit status 3 and
// the reason.
func TestFirstGenerationFails(t *testing.T) {
	t.Parallel()
	argv, env := lfds("LFDS_FAIL=1")
	dir := t.TempDir()
	cmd := exec.Command(testBin, append([]string{"run", "--listen", "tcp://127.0.0.1:0", "--control", filepath.Join(dir, "run", "c.sock"), "--"}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	code, out := runBaton(t, cmd, time.Minute)
	if code != 3 || !strings.Contains(string(out), "exit status 3") || !strings.Contains(string(out), "no such upstream") {
		t.Errorf("baton run with a failing worker: exit %d\n%s\nwant exit 3 with the reason and its stderr", code, out)
	}
}
