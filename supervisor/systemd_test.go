//go:build linux

package supervisor_test

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batonhq/baton/supervisor"
	"golang.org/x/sys/unix"
)

// Under systemd (NOTIFY_SOCKET in the master's environment) the master is
// the one that speaks, from its own pid: READY=1 once the first worker is
// ready, RELOADING=1 then READY=1 around a reload, STOPPING=1. The worker
// — here one using the baton library, which announces itself — talks to
// the master's private socket, never to systemd.
func TestSystemdNotify(t *testing.T) {
	t.Parallel()
	sock := filepath.Join(t.TempDir(), "notify.sock")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, _ := c.SyscallConn()
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	type msg struct {
		pid  int32
		text string
	}
	var (
		mu   sync.Mutex
		msgs []msg
	)
	go func() {
		buf, oob := make([]byte, 4096), make([]byte, 1024)
		for {
			n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
			if err != nil {
				return
			}
			var pid int32 = -1
			cms, _ := unix.ParseSocketControlMessage(oob[:oobn])
			for i := range cms {
				if cred, err := unix.ParseUnixCredentials(&cms[i]); err == nil {
					pid = cred.Pid
				}
			}
			mu.Lock()
			msgs = append(msgs, msg{pid, string(buf[:n])})
			mu.Unlock()
		}
	}()
	addr := freeAddr(t)
	m := startMaster(t, nil, []string{"--listen", "tcp://" + addr}, []string{testBin, "demo-server", "-listen", addr}, []string{"NOTIFY_SOCKET=" + sock})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res, code, stderr := m.reload(ctx); code != 0 {
		t.Fatalf("baton reload: exit %d, %+v, %s", code, res, stderr)
	}
	if code, out := m.call(supervisor.CmdStop); code != 0 {
		t.Fatalf("stop: exit %d\n%s", code, out)
	}
	m.wait(20 * time.Second)
	mu.Lock()
	defer mu.Unlock()
	var seq []string
	for _, x := range msgs {
		if int(x.pid) != m.cmd.Process.Pid {
			t.Errorf("systemd heard %q from pid %d; want only the master (pid %d)", x.text, x.pid, m.cmd.Process.Pid)
		}
		for _, f := range strings.Split(x.text, "\n") {
			if k, _, _ := strings.Cut(f, "="); k == "READY" || k == "RELOADING" || k == "STOPPING" {
				seq = append(seq, f)
			}
		}
	}
	if got, want := strings.Join(seq, " "), "READY=1 RELOADING=1 READY=1 STOPPING=1"; got != want {
		t.Errorf("systemd heard %q; want %q (all: %q)", got, want, msgs)
	}
}
