//go:build linux

package supervisor_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/supervisor"
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
	// What a client hears, in a process of its own (what a person sees
	// of it is tested in cmd/baton).
	code, out := m.call(supervisor.CmdStatus)
	var resp supervisor.Response
	json.Unmarshal([]byte(out), &resp)
	if st := resp.Status; code != 0 || st == nil || len(st.Generations) == 0 || st.Generations[len(st.Generations)-1].Gen != 2 ||
		st.Generations[len(st.Generations)-1].State != supervisor.StateServing || len(st.Listeners) != 1 || st.Listeners[0] != "tcp://"+addr {
		t.Errorf("status: exit %d\n%s\nwant generation 2 serving on tcp://%s", code, out, addr)
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
