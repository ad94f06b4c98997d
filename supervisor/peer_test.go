//go:build linux

package supervisor_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/proctest"
)

const capDacOverride = 1

// A process of another user that gets to the control socket (here: with
// CAP_DAC_OVERRIDE through the 0700 directory and the 0600 socket) is
// refused without an answer, and the service goes on.
func TestControlRefusesOtherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		requireIntegration(t, "TestControlRefusesOtherUser needs root to start a process of another uid")
	}
	addr := freeAddr(t)
	argv, env := lfds()
	m := startMaster(t, nil, []string{"--listen", "tcp://" + addr, "--ready", "tcp"}, argv, env)
	// A copy of the test binary that uid 65534 may run: the go command
	// builds it in a directory only its user may enter.
	dir, err := os.MkdirTemp("", "baton-peer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	client := filepath.Join(dir, "baton")
	proctest.CopyExecutable(t, testBin, client)
	for _, cmd := range []string{"status", "reload", "stop"} {
		c := exec.Command(client, "call", cmd, "--control", m.control)
		c.SysProcAttr = &syscall.SysProcAttr{
			Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
			AmbientCaps: []uintptr{capDacOverride},
		}
		code, out := runBaton(t, c, time.Minute)
		if code != 3 || !strings.Contains(string(out), "closed the connection without an answer") {
			t.Errorf("baton %s as uid 65534: exit %d\n%s\nwant exit 3: the master closed the connection", cmd, code, out)
		}
	}
	if out := m.output(); strings.Count(out, "refused a connection from another user") != 3 || !strings.Contains(out, "uid=65534") {
		t.Errorf("the master did not log three refusals of uid 65534:\n%s", out)
	}
	st, err := m.waitServing(1, 0)
	if err != nil || st.Generations[0].Gen != 1 {
		t.Errorf("after the refusals: %+v, %v; want generation 1 serving", st, err)
	}
	if _, err := get(addr); err != nil {
		t.Errorf("the service stopped answering: %v", err)
	}
}
