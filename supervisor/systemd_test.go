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

// notifyListener is a stand-in for systemd's notification socket: it
// records what arrives, when, and from which pid.
type notifyListener struct {
	path string
	mu   sync.Mutex
	msgs []notifyMsg
	more chan struct{} // a message came
}

type notifyMsg struct {
	pid  int32
	at   time.Time
	text string
}

func listenNotify(t *testing.T) *notifyListener {
	t.Helper()
	n := &notifyListener{path: filepath.Join(t.TempDir(), "notify.sock"), more: make(chan struct{}, 1)}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: n.path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	raw, _ := c.SyscallConn()
	raw.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1) })
	go func() {
		buf, oob := make([]byte, 4096), make([]byte, 1024)
		for {
			k, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
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
			n.mu.Lock()
			n.msgs = append(n.msgs, notifyMsg{pid, time.Now(), string(buf[:k])})
			n.mu.Unlock()
			select {
			case n.more <- struct{}{}:
			default:
			}
		}
	}()
	return n
}

// lines returns every line heard with the time it came, in order.
func (n *notifyListener) lines() []notifyMsg {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []notifyMsg
	for _, m := range n.msgs {
		for _, f := range strings.Split(m.text, "\n") {
			out = append(out, notifyMsg{m.pid, m.at, f})
		}
	}
	return out
}

// waitLine waits until a line heard after the line after satisfies ok:
// the master sends before it answers, but the datagram may still be on
// its way to the reader.
func (n *notifyListener) waitLine(after string, ok func(string) bool, d time.Duration) bool {
	deadline := time.After(d)
	for {
		seen := false
		for _, l := range n.lines() {
			seen = seen || l.text == after
			if seen && ok(l.text) {
				return true
			}
		}
		select {
		case <-n.more:
		case <-deadline:
			return false
		}
	}
}

// TestSystemdNotifyProbation: under systemd, a reload with a probation
// ends — READY=1 after RELOADING=1 — only once the probation is over,
// whether the new generation passed it or died on it; the STATUS= of the
// end says which.
func TestSystemdNotifyProbation(t *testing.T) {
	const probation = time.Second
	for _, c := range []struct {
		name, mode string
		fails      bool
		status     string // in the STATUS= sent with the READY=1 that ends the reload
	}{
		{"passes", "ok", false, "serving, generation 2"},
		{"dies", "ready-exit-300", true, "reload failed: died"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := listenNotify(t)
			r := newRig(t, rigConfig{flags: []string{"--probation", probation.String()}, env: []string{"NOTIFY_SOCKET=" + n.path}})
			r.setModes(c.mode, "ok")
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			res, code, out := r.m.reload(ctx)
			if (code == 0) == c.fails || res.OK == c.fails {
				t.Fatalf("baton reload: exit %d, %+v, %s; want it to fail: %v", code, res, out, c.fails)
			}
			if !n.waitLine("RELOADING=1", func(s string) bool { return s == "READY=1" }, 10*time.Second) {
				t.Fatalf("no READY=1 after RELOADING=1: %+v", n.lines())
			}
			var reloading, ready time.Time
			var status string
			onProbation := false
			for _, l := range n.lines() {
				if int(l.pid) != r.m.cmd.Process.Pid {
					t.Errorf("systemd heard %q from pid %d; want only the master", l.text, l.pid)
				}
				switch {
				case l.text == "RELOADING=1":
					reloading = l.at
				case l.text == "READY=1" && !reloading.IsZero() && ready.IsZero():
					ready = l.at
				case strings.HasPrefix(l.text, "STATUS=") && !reloading.IsZero():
					if strings.Contains(l.text, "on probation") && ready.IsZero() {
						onProbation = true
					}
					if !ready.IsZero() && status == "" {
						status = l.text // sent with READY=1
					}
				}
			}
			if reloading.IsZero() || ready.IsZero() || !onProbation {
				t.Fatalf("systemd heard %+v; want RELOADING=1, a STATUS= on probation, then READY=1", n.lines())
			}
			if !c.fails && ready.Sub(reloading) < probation {
				// A lower bound on a deliberate wait: READY=1 no
				// sooner than the probation allows.
				t.Errorf("READY=1 came %v after RELOADING=1; want no sooner than the probation, %v", ready.Sub(reloading), probation)
			}
			if !strings.Contains(status, c.status) {
				t.Errorf("the reload ended with %q; want %q in it", status, c.status)
			}
			t.Logf("RELOADING=1 → READY=1 in %v; %s", ready.Sub(reloading).Round(time.Millisecond), status)
			r.stop(0)
		})
	}
}
