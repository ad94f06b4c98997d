//go:build linux

package supervisor_test

import (
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// SIGUSR1 and SIGWINCH to the master go to the serving worker; SIGHUP
// reloads; "baton status" shows both generations meanwhile.
func TestSignals(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	argv, env := lfds()
	m := startMaster(t, nil, []string{"--listen", "tcp://" + addr, "--ready", "tcp", "--drain-timeout", "5s"}, argv, env)
	st, _ := m.status()
	first := st.Generations[0].PID
	for _, sig := range []syscall.Signal{syscall.SIGUSR1, syscall.SIGWINCH} {
		if err := m.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("lfds: pid %d got %v", first, sig)
		if !waitFor(5*time.Second, func() bool { return strings.Contains(m.output(), want) }) {
			t.Errorf("the worker never logged %q", want)
		}
	}
	if err := m.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	if !waitFor(10*time.Second, func() bool {
		st, err := m.status()
		return err == nil && st.State == "serving" && st.Generations[len(st.Generations)-1].Gen == 2
	}) {
		t.Fatalf("no generation 2 after SIGHUP")
	}
	out, err := exec.Command(batonBin, "status", "--control", m.control).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "gen 2") || !strings.Contains(string(out), "serving") || !strings.Contains(string(out), "listen      tcp://"+addr) {
		t.Errorf("baton status: %v\n%s", err, out)
	}
	if now, err := get(addr); err != nil || strings.Contains(now, fmt.Sprint(first)) {
		t.Errorf("after SIGHUP the service answers %q, %v; want the new generation", now, err)
	}
}

func waitFor(d time.Duration, f func() bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if f() {
			return true
		}
	}
	return f()
}
