//go:build linux

package baton_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/proctest"
)

// The refusals SECURITY.md claims for the files and directories baton
// uses. The socket refusals are in control_test.go and handoff_proc_test.go.

// startRefused starts a server that must refuse to run, and returns its
// output.
func startRefused(t *testing.T, cfg serverConfig) string {
	t.Helper()
	p := proctest.Start(t, "server", []string{cfg.env()})
	st, _ := p.Wait(20 * time.Second)
	if st == nil {
		t.Fatal("still running; want a refusal")
	}
	if st.ExitCode() == 0 {
		t.Fatalf("exit 0; want a refusal. Output:\n%s", p.Output())
	}
	return p.Output()
}

// A control directory that belongs to somebody else is refused even when
// it is closed to everybody but its owner: its owner could swap the socket.
func TestControlRefusesDirectoryNotOurs(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		requireIntegration(t, "TestControlRefusesDirectoryNotOurs needs root to give a directory to another uid")
	}
	dir := t.TempDir()
	ctl := filepath.Join(dir, "ctl")
	if err := os.Mkdir(ctl, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(ctl, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	out := startRefused(t, serverConfig{Dir: dir, Control: filepath.Join(ctl, "c.sock")})
	if !strings.Contains(out, "belongs to uid 65534") {
		t.Errorf("output:\n%s\nwant a refusal that names the directory's owner", out)
	}
	if ents, _ := os.ReadDir(ctl); len(ents) != 0 {
		t.Errorf("left %d files in the other user's directory", len(ents))
	}
}

// A control directory named through a symlink is refused: whoever may
// change the link could point the socket path elsewhere between two uses.
func TestControlRefusesSymlinkedDirectory(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.Mkdir(target, 0o700); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "ctl")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	out := startRefused(t, serverConfig{Dir: dir, Control: filepath.Join(link, "c.sock")})
	if !strings.Contains(out, "is a symlink") {
		t.Errorf("output:\n%s\nwant a refusal that says the directory is a symlink", out)
	}
	if ents, _ := os.ReadDir(target); len(ents) != 0 {
		t.Errorf("left %d files behind the link", len(ents))
	}
}

// The PID file is written under a fresh name and renamed into place: a
// symlink planted at its path is replaced, never followed, so the pid is
// not written into the file it points to.
func TestPIDFileReplacesSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("precious\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "app.pid")
	if err := os.Symlink(victim, pidFile); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, serverConfig{PIDFile: pidFile})
	fi, err := os.Lstat(pidFile)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatalf("PID file: %v, %v; want a regular file in place of the link", fi, err)
	}
	if got := readPid(t, pidFile); got != s.proc.Pid() {
		t.Errorf("PID file names %d; want %d", got, s.proc.Pid())
	}
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("the link's target now holds %q", b)
	}
	s.mustUpgrade()
	if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
		t.Errorf("after an upgrade the link's target holds %q", b)
	}
	s.stop()
}

// The PID file is readable by everybody (0644, whatever the umask) but
// written only by its owner, and a stale temporary file is never left
// next to it.
func TestPIDFileMode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "app.pid")
	s := startServer(t, serverConfig{PIDFile: pidFile})
	s.mustUpgrade()
	fi, err := os.Stat(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o644 {
		t.Errorf("PID file mode %#o; want 0644", fi.Mode().Perm())
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), ".app.pid") {
			t.Errorf("temporary file %s left next to the PID file", e.Name())
		}
	}
	if got := readPid(t, pidFile); got != s.servingPid() {
		t.Errorf("PID file names %d; the serving pid is %d", got, s.servingPid())
	}
	s.stop()
}

func init() {
	proctest.Register("stranger-listen", strangerListenMain)
}

// strangerListenMain listens on the unix socket STRANGER_PATH, prints
// "listening", and accepts (and drops) connections until killed.
func strangerListenMain() {
	ln, err := net.Listen("unix", os.Getenv("STRANGER_PATH"))
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	fmt.Println("listening uid=" + strconv.Itoa(os.Geteuid()))
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Close()
	}
}

// A new instance refuses to take over from a control socket served by
// another uid (SO_PEERCRED on the client's side): it would otherwise accept
// a stranger's descriptors as its service's. It says who serves there, and
// does not touch the socket.
func TestControlClientRefusesOtherUser(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		requireIntegration(t, "TestControlClientRefusesOtherUser needs root to start a process of another uid")
	}
	dir := t.TempDir()
	ctl := filepath.Join(dir, "ctl")
	if err := os.Mkdir(ctl, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(ctl, "c.sock")
	cmd := exec.Command(reachableCopy(t))
	cmd.Env = append(os.Environ(), "STRANGER_PATH="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
		AmbientCaps: []uintptr{capDacOverride},
	}
	stranger := proctest.StartCommand(t, "stranger-listen", cmd)
	if _, err := stranger.WaitLine("listening uid=65534", 20*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, stranger.Output())
	}
	out := startRefused(t, serverConfig{Dir: dir, Control: path})
	if !strings.Contains(out, "served by uid 65534") {
		t.Errorf("output:\n%s\nwant a refusal that names the other uid", out)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("the stranger's socket: %v, %v; want it left in place", fi, err)
	}
	if !proctest.Alive(stranger.Pid()) {
		t.Errorf("the stranger's listener is gone")
	}
}
