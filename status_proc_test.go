//go:build linux

package baton_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/proctest"
)

// getStatus asks the serving generation of the reference server at addr
// for its Status (GET /status).
func getStatus(t *testing.T, addr string) baton.Status {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get("http://" + addr + "/status")
	if err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	defer resp.Body.Close()
	var st baton.Status
	d := json.NewDecoder(resp.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(&st); err != nil {
		t.Fatalf("GET /status: %v", err)
	}
	return st
}

// holdStreams opens n GET /stream responses at addr, each read until it
// ends; they land on the generation that accepts at the time.
func holdStreams(t *testing.T, addr string, n int) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	t.Cleanup(c.CloseIdleConnections)
	for range n {
		resp, err := c.Get("http://" + addr + "/stream")
		if err != nil {
			t.Fatalf("GET /stream: %v", err)
		}
		br := bufio.NewReader(resp.Body)
		if _, err := br.ReadString('\n'); err != nil { // the first tick: it is served
			t.Fatalf("GET /stream: %v", err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		go func() {
			for {
				if _, err := br.ReadString('\n'); err != nil {
					return
				}
			}
		}()
	}
}

// Upgrader.Status, read through the reference server's GET /status during
// real upgrades, agrees with what happened: the generations still
// running (each holding the streams opened on it, which a slow close pace
// keeps open while it drains) with their pids, states, ages and memory;
// the upgrades that worked and the one that failed, with its reason,
// carried from generation to generation.
func TestStatusDuringUpgrades(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(run, "server.pid")
	addr := freeAddr(t)
	// A pace of a minute: a draining generation ends one stream at once
	// and keeps the rest for the test's length.
	proctest.Start(t, "reference-server", nil, "-listen", addr, "-pid-file", pidFile,
		"-drain", "2m", "-close-pace", "1m")
	gen1 := proctest.WaitPIDFile(t, pidFile, 0, time.Minute)
	// Every generation is stopped at the end, and waited for: the serving
	// one with SIGTERM, the draining ones at once (HurrySignal).
	var gens []int
	defer func() {
		for i, pid := range gens {
			sig := baton.HurrySignal
			if i == len(gens)-1 {
				sig = syscall.SIGTERM
			}
			syscall.Kill(pid, sig)
		}
		for _, pid := range gens {
			if !waitFor(30*time.Second, func() bool { return !procfs.Alive(pid) }) {
				t.Errorf("generation pid %d still runs 30s after SIGTERM", pid)
			}
		}
	}()
	gens = append(gens, gen1)
	const held = 3
	holdStreams(t, addr, held)

	st := getStatus(t, addr)
	if len(st.Generations) != 1 {
		t.Fatalf("generation 1 alone: status lists %d generations: %+v", len(st.Generations), st)
	}
	g := st.Generations[0]
	if g.Generation != 1 || g.PID != gen1 || g.State != baton.GenServing || g.RSS <= 0 || g.Age <= 0 || g.Started.IsZero() {
		t.Errorf("generation 1: %+v; want generation 1, pid %d, serving, RSS and age above 0", g, gen1)
	}
	// The streams, and maybe the status request itself.
	if g.Connections < held {
		t.Errorf("generation 1 holds %d connections; want at least the %d streams", g.Connections, held)
	}
	if st.Upgrades != (baton.UpgradeStats{}) {
		t.Errorf("before any upgrade: %+v", st.Upgrades)
	}

	// Upgrade 1 works.
	syscall.Kill(gen1, syscall.SIGHUP)
	gen2 := proctest.WaitPIDFile(t, pidFile, gen1, time.Minute)
	gens = append(gens, gen2)
	holdStreams(t, addr, held)
	st = getStatus(t, addr)
	if len(st.Generations) != 2 || st.Generations[0].PID != gen2 || st.Generations[1].PID != gen1 {
		t.Fatalf("after one upgrade: %+v; want generation 2 (pid %d) then generation 1 (pid %d)", st.Generations, gen2, gen1)
	}
	if g := st.Generations[1]; g.State != baton.GenDraining || g.Generation != 1 || g.Age <= st.Generations[0].Age || g.RSS <= 0 || g.Connections < held-1 {
		t.Errorf("generation 1, draining: %+v; want draining, older than generation 2, RSS above 0, at least %d connections", g, held-1)
	}
	if st.Upgrades.OK != 1 || st.Upgrades.Failed != 0 {
		t.Errorf("after one upgrade: %+v; want 1 ok", st.Upgrades)
	}

	// Upgrade 2 fails: the successor cannot write its PID file (its
	// directory is a file now), refuses, and generation 2 serves on.
	hidden := run + ".away"
	if err := os.Rename(run, hidden); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(run, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	syscall.Kill(gen2, syscall.SIGHUP)
	// The status endpoint is what tells: asked until it counts the
	// failure, for a minute at most.
	deadline := time.Now().Add(time.Minute)
	for st = getStatus(t, addr); st.Upgrades.Failed == 0 && time.Now().Before(deadline); st = getStatus(t, addr) {
		time.Sleep(20 * time.Millisecond)
	}
	if st.Upgrades.Failed != 1 || st.Upgrades.OK != 1 || !strings.Contains(st.Upgrades.LastError, "PID file") || st.Upgrades.LastErrorAt.IsZero() {
		t.Fatalf("after a failed upgrade: %+v; want 1 ok, 1 failed naming the PID file", st.Upgrades)
	}
	if st.Generations[0].PID != gen2 || st.Generations[0].State != baton.GenServing {
		t.Errorf("after a failed upgrade generation 2 serves on; status: %+v", st.Generations[0])
	}
	if err := os.Remove(run); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(hidden, run); err != nil {
		t.Fatal(err)
	}

	// Upgrade 3 works: generation 3 knows of all three and of the
	// failure generation 2 saw.
	syscall.Kill(gen2, syscall.SIGHUP)
	gen3 := proctest.WaitPIDFile(t, pidFile, gen2, time.Minute)
	gens = append(gens, gen3)
	st = getStatus(t, addr)
	var pids []int
	for _, g := range st.Generations {
		pids = append(pids, g.PID)
	}
	if fmt.Sprint(pids) != fmt.Sprint([]int{gen3, gen2, gen1}) {
		t.Errorf("after three upgrades the status lists pids %v; want %v (newest first)", pids, []int{gen3, gen2, gen1})
	}
	if st.Upgrades.OK != 2 || st.Upgrades.Failed != 1 || !strings.Contains(st.Upgrades.LastError, "PID file") {
		t.Errorf("generation 3's counts: %+v; want 2 ok, 1 failed naming the PID file (carried from generation 2)", st.Upgrades)
	}
	for _, g := range st.Generations[1:] {
		if g.State != baton.GenDraining || g.Connections < held-1 {
			t.Errorf("generation %d: %+v; want draining with at least %d connections", g.Generation, g, held-1)
		}
	}
	t.Logf("status of generation 3: %+v", st)
}
