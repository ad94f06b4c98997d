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
	"sync"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/proctest"
	"github.com/batonhq/baton/supervisor"
)

// "baton reload --master" replaces the master's binary in place under
// load: same pid, same sockets, same serving worker, not a request
// failed; reloads of the worker go on working in between.
func TestExecMasterUnderLoad(t *testing.T) {
	for _, mode := range []loadgen.Mode{loadgen.Fresh, loadgen.KeepAlive} {
		t.Run(string(mode), func(t *testing.T) {
			dir := t.TempDir()
			bin := filepath.Join(dir, "baton")
			install := func() {
				// A new file renamed over the old, as a package manager does.
				proctest.CopyExecutable(t, testBin, bin+".new")
				if err := os.Rename(bin+".new", bin); err != nil {
					t.Fatal(err)
				}
			}
			install()
			addr := freeAddr(t)
			m := startMasterBin(t, bin, []string{"--listen", "tcp://" + addr}, []string{bin, "demo-server", "-listen", addr, "-drain", "10s", "-idle-grace", "2s"})
			pid := m.cmd.Process.Pid
			var (
				mu      sync.Mutex
				n       int
				execs   []time.Duration
				fdsSeen []int
			)
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			rep, err := loadgen.Run(ctx, loadgen.Config{
				URL:      "http://" + addr + "/",
				Clients:  16,
				Modes:    []loadgen.Mode{mode},
				Upgrades: 10,
				Upgrade: func(ctx context.Context) error {
					mu.Lock()
					defer mu.Unlock()
					n++
					if n%2 == 0 {
						res, code, stderr := m.reload(ctx)
						if code != 0 || !res.OK {
							return fmt.Errorf("baton reload: exit %d, %+v, %s", code, res, stderr)
						}
						return nil
					}
					before, err := m.status()
					if err != nil {
						return err
					}
					install()
					start := time.Now()
					resp, err := supervisor.Call(ctx, m.control, supervisor.CmdExec)
					if err != nil {
						return fmt.Errorf("exec-master: %v", err)
					}
					execs = append(execs, time.Since(start))
					if !resp.OK || resp.Status == nil {
						return fmt.Errorf("exec-master answered %+v", resp)
					}
					after := resp.Status
					if after.PID != pid || after.PID != before.PID {
						return fmt.Errorf("the master is pid %d after its exec, %d before", after.PID, before.PID)
					}
					if fmt.Sprint(after.Generations[len(after.Generations)-1].PID) != fmt.Sprint(before.Generations[len(before.Generations)-1].PID) {
						return fmt.Errorf("the serving worker changed across the master's exec: %+v, then %+v", before.Generations, after.Generations)
					}
					fdsSeen = append(fdsSeen, fdsBeyondGenerations(m))
					return nil
				},
				Warmup:    300 * time.Millisecond,
				Settle:    100 * time.Millisecond,
				SlowDelay: 300 * time.Millisecond,
			})
			if err != nil {
				t.Fatalf("loadgen.Run: %v", err)
			}
			var b strings.Builder
			rep.WriteText(&b)
			t.Logf("\n%s", b.String())
			for _, p := range rep.Problems() {
				t.Error(p) // 10 upgrades: 5 of the master, 5 of the worker
			}
			t.Logf("master execs in place took %s; its descriptors after each, beyond two for each live generation: %v", latencies(execs), fdsSeen)
			for _, n := range fdsSeen {
				if n != fdsSeen[0] {
					t.Errorf("the master's descriptors changed across its execs: %v", fdsSeen)
					break
				}
			}
			if out := m.output(); strings.Count(out, "the master's new binary runs") != 5 {
				t.Errorf("the master did not log 5 execs of its new binary")
			}
			if _, err := m.waitServing(1, 30*time.Second); err != nil {
				t.Fatal(err)
			}
			if code, out := m.call(supervisor.CmdStop); code != 0 {
				t.Errorf("stop: exit %d\n%s", code, out)
			}
			if code := m.wait(20 * time.Second); code != 0 {
				t.Errorf("the master exited %d; want 0", code)
			}
			if _, err := os.Stat(m.control); !os.IsNotExist(err) {
				t.Errorf("the control socket is still there after the stop: %v", err)
			}
		})
	}
}

// A new master binary that does not run is refused before the exec: the
// master goes on as it was, and says why.
func TestExecMasterRefusesBrokenBinary(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	bin := filepath.Join(dir, "baton")
	proctest.CopyExecutable(t, testBin, bin)
	addr := freeAddr(t)
	m := startMasterBin(t, bin, []string{"--listen", "tcp://" + addr}, []string{testBin, "demo-server", "-listen", addr})
	before, _ := get(addr)
	os.WriteFile(bin+".new", []byte("#!/bin/sh\necho broken release >&2\nexit 1\n"), 0o755)
	os.Rename(bin+".new", bin)
	// What a client hears (what a person sees of it is tested in
	// cmd/baton): a failure, and why.
	code, out := m.call(supervisor.CmdExec)
	var resp supervisor.Response
	json.Unmarshal([]byte(out), &resp)
	if code != 1 || resp.Code != supervisor.CodeFailed || !strings.Contains(resp.Error, "does not run: exit status 1") {
		t.Errorf("exec-master with a broken binary: exit %d\n%s\nwant exit 1, code failed and the reason", code, out)
	}
	st, err := m.waitServing(1, 5*time.Second)
	if err != nil || st.PID != m.cmd.Process.Pid {
		t.Fatalf("after the refused exec: %+v, %v", st, err)
	}
	if now, err := get(addr); err != nil || now != before {
		t.Errorf("the service answers %q, %v; want %q as before", now, err, before)
	}
	// The master still reloads its worker.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res, code, stderr := m.reload(ctx); code != 0 || !res.OK {
		t.Errorf("baton reload after the refused exec: exit %d, %+v, %s", code, res, stderr)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// fdsBeyondGenerations counts the master's descriptors less the two each
// live generation holds there (its stderr pipe and its notify socket):
// how many generations still drain after an exec depends on the pace of
// the machine, a leak does not. The fewest over a few samples, so that a
// control connection being closed is not counted.
func fdsBeyondGenerations(m *master) int {
	fewest := -1
	for range 5 {
		before, err := m.status()
		if err != nil {
			continue
		}
		n := fdCount(before.PID)
		after, err := m.status()
		if err != nil || len(after.Generations) != len(before.Generations) {
			continue
		}
		if n -= 2 * len(before.Generations); fewest < 0 || n < fewest {
			fewest = n
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fewest
}
