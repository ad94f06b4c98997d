//go:build linux

package supervisor_test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batonhq/baton/supervisor"
)

// The refusals SECURITY.md claims for "baton run". The control socket's
// refusal of another uid is TestControlRefusesOtherUser.

// "baton run" refuses a control directory others could reach or swap: open
// to others, owned by somebody else, or named through a symlink. It says
// why and how to fix it, and leaves the directory as it was.
func TestRunRefusesControlDirectory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, want string
		prepare    func(t *testing.T, dir string) string // returns the control dir
	}{
		{"open to others", "chmod 700", func(t *testing.T, dir string) string {
			ctl := filepath.Join(dir, "run")
			os.Mkdir(ctl, 0o700)
			os.Chmod(ctl, 0o755)
			return ctl
		}},
		{"owned by another uid", "must be a directory of ours", func(t *testing.T, dir string) string {
			if os.Geteuid() != 0 {
				requireIntegration(t, "needs root to give a directory to another uid")
			}
			ctl := filepath.Join(dir, "run")
			os.Mkdir(ctl, 0o700)
			if err := os.Chown(ctl, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			return ctl
		}},
		{"a symlink", "must be a directory of ours", func(t *testing.T, dir string) string {
			target := filepath.Join(dir, "target")
			os.Mkdir(target, 0o700)
			ctl := filepath.Join(dir, "run")
			if err := os.Symlink(target, ctl); err != nil {
				t.Fatal(err)
			}
			return ctl
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			ctl := tc.prepare(t, dir)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, testBin, "run", "--control", filepath.Join(ctl, "control.sock"),
				"--listen", "tcp://"+freeAddr(t), "--", "/bin/sleep", "600")
			code, out := runBaton(t, cmd, 30*time.Second)
			if code == 0 || !strings.Contains(out, tc.want) {
				t.Errorf("baton run: exit %d\n%s\nwant a failure that says %q", code, out, tc.want)
			}
			if ents, _ := os.ReadDir(ctl); len(ents) != 0 {
				t.Errorf("left %d files in %s", len(ents), ctl)
			}
		})
	}
}

// A request longer than MaxRequestSize, or one that is not a request, gets
// an error answer and changes nothing.
func TestControlRefusesBadRequests(t *testing.T) {
	t.Parallel()
	addr := freeAddr(t)
	argv, env := lfds()
	m := startMaster(t, nil, []string{"--listen", "tcp://" + addr, "--ready", "tcp"}, argv, env)
	for _, tc := range []struct{ name, send, want string }{
		{"oversize", strings.Repeat("x", 2*supervisor.MaxRequestSize) + "\n", "longer than"},
		{"not JSON", "reload\n", "bad request"},
		{"unknown command", `{"cmd":"rm -rf /"}` + "\n", "unknown command"},
	} {
		c, err := net.Dial("unix", m.control)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write([]byte(tc.send))
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.Contains(line, `"ok":false`) || !strings.Contains(line, tc.want) {
			t.Errorf("%s: answer %q, %v; want an error with %q", tc.name, line, err, tc.want)
		}
	}
	st, err := m.waitServing(1, 0)
	if err != nil || len(st.Generations) != 1 || st.Generations[0].Gen != 1 {
		t.Errorf("after the bad requests: %+v, %v; want generation 1 serving, alone", st, err)
	}
	if _, err := get(addr); err != nil {
		t.Errorf("the service stopped answering: %v", err)
	}
}

// READY=1 counts only when it comes from the new generation's own pid
// (SCM_CREDENTIALS): another process that reaches the generation's notify
// socket cannot declare a hung worker ready and get the old one stopped.
func TestNotifyFromAnotherProcessIgnored(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	addr := freeAddr(t)
	mode := filepath.Join(dir, "mode")
	script := filepath.Join(dir, "worker.sh")
	os.WriteFile(mode, []byte("ok"), 0o644)
	os.WriteFile(script, []byte(`#!/bin/sh
if [ "$(cat `+mode+`)" = hang ]; then exec sleep 600; fi
exec `+testBin+` demo-server -listen `+addr+`
`), 0o755)
	m := startMaster(t, nil, []string{"--listen", "tcp://" + addr, "--upgrade-timeout", "3s"}, []string{script}, nil)
	first, err := get(addr)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(mode, []byte("hang"), 0o644)

	// Forge READY=1 from this process to every new notify socket until
	// the reload is over.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var forged int
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			socks, _ := filepath.Glob(filepath.Join(filepath.Dir(m.control), "notify-*.sock"))
			for _, s := range socks {
				if strings.HasSuffix(s, "notify-1.sock") {
					continue
				}
				c, err := net.Dial("unixgram", s)
				if err != nil {
					continue
				}
				if _, err := c.Write([]byte("READY=1")); err == nil {
					forged++
				}
				c.Close()
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	res, code, stderr := m.reload(ctx)
	cancel()
	close(stop)
	wg.Wait()
	if forged == 0 {
		t.Fatal("no forged notification was delivered: the test proves nothing")
	}
	if code != 1 || res.OK || !strings.Contains(res.Error, "not ready within 3s") {
		t.Errorf("baton reload with %d forged READY=1: exit %d, %+v\n%s\nwant exit 1: not ready", forged, code, res, stderr)
	}
	if now, err := get(addr); err != nil || now != first {
		t.Errorf("after the reload: %q, %v; want the first generation still serving (%q)", now, err, first)
	}
}
