//go:build linux

package supervisor_test

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/supervisor"
)

// As PID 1 of a new pid namespace (a container's init), the master reaps
// the orphans a double-forking worker leaves (no zombie), stops
// everything gracefully on SIGTERM, what the worker left behind included,
// and exits with the worker's status; it upgrades itself in place and is
// still PID 1, with the same worker serving.
func TestPID1(t *testing.T) {
	t.Parallel()
	unshare, err := exec.LookPath("unshare")
	if err != nil || os.Geteuid() != 0 {
		requireIntegration(t, "TestPID1 needs root and unshare(1) (util-linux) for a pid namespace")
	}
	addr := freeAddr(t)
	_, env := lfds("LFDS_EXIT=7")
	// The worker leaves two daemons behind, reparented to the master: one
	// that exits soon (and must be reaped) and one that runs on (and must
	// be stopped with everything else).
	worker := []string{"/bin/sh", "-c", `sh -c "sleep 0.2 & sleep 600 &"; exec "$0" lfds`, testBin}
	m := startMaster(t, []string{unshare, "--pid", "--fork", "--mount-proc", "--kill-child"},
		[]string{"--listen", "tcp://" + addr, "--ready", "tcp", "--drain-timeout", "5s"}, worker, env)
	st, err := m.status()
	if err != nil {
		t.Fatal(err)
	}
	if st.PID != 1 {
		t.Fatalf("the master is pid %d in its namespace; want 1", st.PID)
	}
	host := 0
	for pid := range childrenOf(m.cmd.Process.Pid) {
		host = pid
	}
	if host == 0 {
		t.Fatal("cannot find the master among unshare's children")
	}
	if _, err := get(addr); err != nil {
		t.Fatal(err)
	}
	// The short daemon has exited by now: reaped, not a zombie.
	var sleeper int
	deadline := time.Now().Add(10 * time.Second)
	for {
		kids := childrenOf(host)
		zombies, sleepers := 0, 0
		for pid, state := range kids {
			if state == "Z" {
				zombies++
			}
			if comm(pid) == "sleep" {
				sleepers++
				sleeper = pid
			}
		}
		st, _ = m.status()
		if zombies == 0 && sleepers == 1 && st != nil && st.Reaped >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the master's children: %v (status %+v); want the worker and one sleep, no zombie, one orphan reaped", kids, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The master upgrades itself in place as PID 1: same pid, same
	// sockets, the same worker serving.
	before, err := m.status()
	if err != nil {
		t.Fatal(err)
	}
	if code, out := m.call(supervisor.CmdExec); code != 0 {
		t.Fatalf("exec-master as PID 1: exit %d\n%s", code, out)
	}
	after, err := m.status()
	if err != nil {
		t.Fatal(err)
	}
	if after.PID != 1 || len(after.Generations) != len(before.Generations) || after.Generations[0].PID != before.Generations[0].PID {
		t.Errorf("after the master's exec: %+v; want pid 1 and the same worker as before (%+v)", after, before)
	}
	if _, ok := childrenOf(m.cmd.Process.Pid)[host]; !ok {
		t.Errorf("the master's host pid %d is gone after its exec in place", host)
	}
	if _, err := get(addr); err != nil {
		t.Fatalf("after the master's exec: %v", err)
	}
	if err := syscall.Kill(host, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := m.wait(20 * time.Second); code != 7 {
		t.Errorf("unshare (the master) exited %d after SIGTERM; want 7, the worker's status", code)
	}
	if alive(sleeper) {
		t.Errorf("the daemon the worker left behind (pid %d) still runs", sleeper)
	}
	if out := m.output(); !strings.Contains(out, `status="exit status 7"`) {
		t.Errorf("the master did not log the worker's exit status 7:\n%s", out)
	}
}

// childrenOf returns the children of pid with their states.
func childrenOf(pid int) map[int]string {
	out := map[int]string{}
	kids, _ := procfs.Children(pid)
	for _, k := range kids {
		out[k.PID] = string(k.State)
	}
	return out
}

func comm(pid int) string {
	st, _ := procfs.ReadStat(pid)
	return st.Comm
}
