package ownersock

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// helperEnv names what the test binary does when re-executed as another
// user: "dial PATH" or "listen PATH".
const helperEnv = "OWNERSOCK_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(h))
	}
	code := m.Run()
	if nobodyBin != "" {
		os.RemoveAll(filepath.Dir(nobodyBin))
	}
	os.Exit(code)
}

// nobodyBin is a copy of the test binary that uid 65534 may execute: the
// one go test built sits in a directory only root may enter.
var (
	nobodyOnce sync.Once
	nobodyBin  string
	nobodyErr  error
)

func nobodyBinary() (string, error) {
	nobodyOnce.Do(func() {
		dir, err := os.MkdirTemp("", "ownersock-nobody-")
		if err == nil {
			err = os.Chmod(dir, 0o755)
		}
		if err == nil {
			// cp writes it, not this process: a parallel test's fork would
			// inherit our writable descriptor and make its exec fail with
			// ETXTBSY (see proctest.CopyExecutable).
			nobodyBin = filepath.Join(dir, "ownersock.test")
			err = exec.Command("cp", "--", os.Args[0], nobodyBin).Run()
		}
		if err == nil {
			err = os.Chmod(nobodyBin, 0o755)
		}
		nobodyErr = err
	})
	return nobodyBin, nobodyErr
}

// tempDir is a fresh directory that passes CheckDir: t.TempDir's are
// 0755.
func tempDir(t *testing.T) string {
	d := filepath.Join(t.TempDir(), "d")
	if err := os.Mkdir(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func helper(h string) int {
	what, path, _ := strings.Cut(h, " ")
	switch what {
	case "dial":
		c, err := net.Dial("unix", path)
		if err != nil {
			fmt.Println("dial:", err)
			return 1
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(make([]byte, 1))
		fmt.Println("read:", n, err)
	case "listen":
		ln, err := net.Listen("unix", path)
		if err != nil {
			fmt.Println("listen:", err)
			return 1
		}
		fmt.Println("listening")
		for {
			c, err := ln.Accept()
			if err != nil {
				return 1
			}
			c.Close()
		}
	}
	return 0
}

// asNobody runs the test binary as uid 65534 with CAP_DAC_OVERRIDE, so
// it gets through the 0700 directory — as a process that somehow got
// there would — and must be stopped by the peer check.
func asNobody(t *testing.T, h string) *exec.Cmd {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to start a process of another uid")
	}
	bin, err := nobodyBinary()
	if err != nil {
		t.Fatalf("copying the test binary for uid 65534: %v", err)
	}
	const capDacOverride = 1
	cmd := exec.Command(bin, "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+h)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: 65534, Gid: 65534},
		AmbientCaps: []uintptr{capDacOverride},
	}
	return cmd
}

func TestCheckDir(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	for _, tc := range []struct {
		name    string
		make    func(dir string) error
		want    string // in the *DirError's text; "" for no error
		notExit bool
	}{
		{"0700", func(d string) error { return os.Mkdir(d, 0o700) }, "", false},
		{"0750", func(d string) error {
			os.Mkdir(d, 0o700)
			return os.Chmod(d, 0o750)
		}, "has mode 0750: others could reach the socket; a socket's directory must be a directory of ours that only we may enter (chmod 700 DIR)", false},
		{"0701", func(d string) error {
			os.Mkdir(d, 0o700)
			return os.Chmod(d, 0o701)
		}, "chmod 700 DIR", false},
		{"symlink", func(d string) error {
			os.Mkdir(d+".target", 0o700)
			return os.Symlink(d+".target", d)
		}, "DIR is a symlink", false},
		{"regular file", func(d string) error { return os.WriteFile(d, nil, 0o600) }, "DIR is not a directory", false},
		{"missing", func(d string) error { return nil }, "", true},
	} {
		dir := filepath.Join(base, strings.ReplaceAll(tc.name, " ", "-"))
		if err := tc.make(dir); err != nil {
			t.Fatal(err)
		}
		err := CheckDir(dir)
		var de *DirError
		switch {
		case tc.notExit:
			if !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s: CheckDir = %v; want fs.ErrNotExist", tc.name, err)
			}
		case tc.want == "":
			if err != nil {
				t.Errorf("%s: CheckDir = %v; want nil", tc.name, err)
			}
		case !errors.As(err, &de) || de.Dir != dir || !strings.Contains(err.Error(), strings.ReplaceAll(tc.want, "DIR", dir)):
			t.Errorf("%s: CheckDir = %v; want a *DirError that says %q", tc.name, err, strings.ReplaceAll(tc.want, "DIR", dir))
		}
	}
	// MakeDir makes a missing one right, and refuses — without changing
	// it — one that is there and wrong.
	made := filepath.Join(base, "made", "deeper")
	if err := MakeDir(made); err != nil {
		t.Errorf("MakeDir(%s) = %v", made, err)
	} else if fi, _ := os.Stat(made); fi.Mode().Perm() != 0o700 {
		t.Errorf("MakeDir made mode %v; want 0700", fi.Mode().Perm())
	}
	open := filepath.Join(base, "0750")
	if err := MakeDir(open); err == nil {
		t.Errorf("MakeDir(%s) of a 0750 directory = nil; want a refusal", open)
	} else if fi, _ := os.Stat(open); fi.Mode().Perm() != 0o750 {
		t.Errorf("MakeDir changed a refused directory's mode to %v", fi.Mode().Perm())
	}
}

// A directory of another uid is refused with its owner named.
func TestCheckDirOtherOwner(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a directory to another uid")
	}
	dir := filepath.Join(t.TempDir(), "theirs")
	os.Mkdir(dir, 0o700)
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	err := CheckDir(dir)
	var de *DirError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "belongs to uid 65534, not to us (uid 0)") || !strings.Contains(err.Error(), "must be a directory of ours") {
		t.Errorf("CheckDir(%s) = %v; want a *DirError naming uid 65534", dir, err)
	}
}

func TestCheckPath(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("precious"), 0o600)
	sock := filepath.Join(dir, "sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, tc := range []struct {
		name, want string
		make       func(p string) error
	}{
		{"nothing", "", func(p string) error { return nil }},
		{"socket", "", func(p string) error { return os.Symlink(sock, p+".l") }}, // the check is of p itself, below
		{"regular file", "is not a socket: a regular file is in the way", func(p string) error { return os.WriteFile(p, []byte("x"), 0o600) }},
		{"symlink", "is not a socket: a symbolic link is in the way", func(p string) error { return os.Symlink(target, p) }},
		{"symlink to a socket", "is not a socket: a symbolic link is in the way", func(p string) error { return os.Symlink(sock, p) }},
		{"directory", "is not a socket: a directory is in the way", func(p string) error { return os.Mkdir(p, 0o700) }},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-"))
		if tc.name == "socket" {
			p = sock
		} else if err := tc.make(p); err != nil {
			t.Fatal(err)
		}
		before, _ := os.Lstat(p)
		err := CheckPath(p)
		var ne *NotSocketError
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: CheckPath = %v; want nil", tc.name, err)
			}
			continue
		}
		if !errors.As(err, &ne) || ne.Path != p || !strings.Contains(err.Error(), p+" "+tc.want) {
			t.Errorf("%s: CheckPath = %v; want a *NotSocketError that says %q", tc.name, err, p+" "+tc.want)
		}
		if live, err := Live(p); live || !errors.As(err, &ne) {
			t.Errorf("%s: Live = %v, %v; want false and a *NotSocketError", tc.name, live, err)
		}
		if after, err := os.Lstat(p); err != nil || !os.SameFile(before, after) {
			t.Errorf("%s: the file in the way was changed: %v", tc.name, err)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Errorf("the symlink's target now reads %q", b)
	}
}

// The library's rule: a successor binds beside the path, and its Commit
// replaces its predecessor's live socket; until then the path leads to
// the predecessor. Close(true) removes the file only if it is still ours.
func TestListenCommitReplace(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "run", "ctl.sock")
	first, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen(%s): %v", path, err)
	}
	if fi, err := os.Stat(filepath.Dir(path)); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("Listen made the directory %v, %v; want mode 0700", fi, err)
	}
	if live, err := Live(path); live || err != nil {
		t.Errorf("before Commit: Live = %v, %v; want nothing there", live, err)
	}
	if got := first.Addr().String(); got != filepath.Join(filepath.Dir(path), fmt.Sprintf(".ctl.sock.%d", os.Getpid())) {
		t.Errorf("Addr before Commit = %s; want the temporary name", got)
	}
	if err := first.Commit(); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if fi, err := os.Lstat(path); err != nil || fi.Mode()&fs.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Fatalf("after Commit: %v, %v; want a socket of mode 0600", fi, err)
	}
	if first.Replaced() {
		t.Errorf("Replaced() = true for our own socket")
	}
	serve(t, first)
	c, cred, err := Dial(path, 5*time.Second)
	if err != nil || c == nil || cred.PID != os.Getpid() || cred.UID != os.Geteuid() || cred.GID != os.Getegid() {
		t.Fatalf("Dial = %v, %+v, %v; want a connection to us (pid %d, uid %d, gid %d)", c, cred, err, os.Getpid(), os.Geteuid(), os.Getegid())
	}
	if line, _ := bufio.NewReader(c).ReadString('\n'); line != fmt.Sprintf("pid %d\n", os.Getpid()) {
		t.Errorf("the listener saw the dialer as %q; want pid %d", line, os.Getpid())
	}
	c.Close()

	// A successor: under the same pid in this test, so the temporary name
	// is the same; Listen removes what a crashed namesake left.
	second, err := Listen(path)
	if err != nil {
		t.Fatalf("second Listen: %v", err)
	}
	if !second.Replaced() || first.Replaced() {
		t.Errorf("before the second Commit: Replaced = %v (second), %v (first); want true, false", second.Replaced(), first.Replaced())
	}
	if err := second.Commit(); err != nil {
		t.Fatalf("second Commit: %v", err)
	}
	if !first.Replaced() || second.Replaced() {
		t.Errorf("after the second Commit: Replaced = %v (first), %v (second); want true, false", first.Replaced(), second.Replaced())
	}
	first.Close(true)
	if fi, err := os.Lstat(path); err != nil || !sameIdentity(fi, second) {
		t.Fatalf("the first Close(true) removed or changed the successor's socket: %v", err)
	}
	if live, err := Live(path); !live || err != nil {
		t.Errorf("Live(successor's socket) = %v, %v; want true", live, err)
	}
	second.Close(false)
	if _, err := os.Lstat(path); err != nil {
		t.Errorf("Close(false) removed the socket: %v", err)
	}
	if live, err := Live(path); live || err != nil {
		t.Errorf("Live(closed socket) = %v, %v; want a stale socket: false, nil", live, err)
	}
	if c, _, err := Dial(path, time.Second); c != nil || err != nil {
		t.Errorf("Dial(stale socket) = %v, %v; want nil, nil", c, err)
	}
	third, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	third.Commit()
	third.Close(true)
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Close(true) of our socket left it: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 0 {
		t.Errorf("left %v in the directory", ents)
	}
}

func sameIdentity(fi fs.FileInfo, l *Listener) bool { return identityOf(fi) == l.file }

// serve answers every connection with the peer's pid, until l is closed.
func serve(t *testing.T, l *Listener) {
	go func() {
		for {
			c, cred, err := l.Accept()
			var pe *PeerError
			if errors.As(err, &pe) {
				continue
			}
			if err != nil {
				return
			}
			fmt.Fprintf(c, "pid %d\n", cred.PID)
			c.Close()
		}
	}()
}

// The master's rule, with the same calls: replace a dead socket, refuse
// a live one and leave it serving.
func TestListenRefusesLive(t *testing.T) {
	t.Parallel()
	path := filepath.Join(tempDir(t), "ctl.sock")
	other, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	commitUnlessLive := func() (*Listener, error) {
		l, err := Listen(path)
		if err != nil {
			return nil, err
		}
		live, err := Live(path)
		if err == nil && live {
			err = ErrLive
		}
		if err != nil {
			l.Close(false)
			return nil, err
		}
		return l, l.Commit()
	}
	before, _ := os.Lstat(path)
	if l, err := commitUnlessLive(); !errors.Is(err, ErrLive) {
		t.Errorf("over a live socket: %v, %v; want ErrLive", l, err)
	}
	if after, err := os.Lstat(path); err != nil || !os.SameFile(before, after) {
		t.Errorf("the live socket was replaced: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Errorf("left %v in the directory; want the live socket only", ents)
	}
	other.SetUnlinkOnClose(false)
	other.Close()
	l, err := commitUnlessLive()
	if err != nil {
		t.Fatalf("over a stale socket: %v; want it replaced", err)
	}
	defer l.Close(true)
	if l.Replaced() {
		t.Errorf("the stale socket is still there")
	}
}

// Another user's process that reaches the socket is refused: Accept
// closes it and says who it was.
func TestAcceptRefusesOtherUser(t *testing.T) {
	t.Parallel()
	base := t.TempDir()
	path := filepath.Join(base, "run", "ctl.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(true)
	l.Commit()
	cmd := asNobody(t, "dial "+path)
	type accepted struct {
		c    *net.UnixConn
		cred Cred
		err  error
	}
	got := make(chan accepted, 1)
	go func() {
		c, cred, err := l.Accept()
		got <- accepted{c, cred, err}
	}()
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "read: 0 EOF") {
		t.Errorf("uid 65534 dialing: %v\n%s\nwant the connection closed without a byte", err, out)
	}
	select {
	case a := <-got:
		var pe *PeerError
		if a.c != nil || !errors.As(a.err, &pe) || !errors.Is(a.err, ErrOtherUser) || pe.Cred.UID != 65534 || pe.Cred.PID != cmd.Process.Pid {
			t.Errorf("Accept = %v, %+v, %v; want a *PeerError for uid 65534, pid %d", a.c, a.cred, a.err, cmd.Process.Pid)
		} else if want := fmt.Sprintf("peer pid %d runs as uid 65534, not as us (uid 0)", cmd.Process.Pid); a.err.Error() != want {
			t.Errorf("PeerError text %q; want %q", a.err, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return within 10s")
	}
}

// Dial refuses a socket served by another user, even in our directory.
func TestDialRefusesOtherUser(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "run")
	if err := MakeDir(dir); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "ctl.sock")
	cmd := asNobody(t, "listen "+path)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	line := make(chan string, 1)
	go func() {
		l, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- l
		io.Copy(io.Discard, stdout)
	}()
	select {
	case l := <-line:
		if l != "listening\n" {
			t.Fatalf("the uid 65534 helper said %q; want listening", l)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the uid 65534 helper did not listen within 10s")
	}
	c, cred, err := Dial(path, 5*time.Second)
	var pe *PeerError
	if c != nil || !errors.As(err, &pe) || !errors.Is(err, ErrOtherUser) || cred.UID != 65534 || cred.PID != cmd.Process.Pid || pe.Path != path {
		t.Errorf("Dial = %v, %+v, %v; want a *PeerError for uid 65534, pid %d, at %s", c, cred, err, cmd.Process.Pid, path)
	} else if want := fmt.Sprintf("%s is served by uid 65534 (pid %d), not by us (uid 0)", path, cmd.Process.Pid); err.Error() != want {
		t.Errorf("Dial's PeerError says %q; want %q", err, want)
	}
}

// Dial: nobody there is no error; something in the way is.
func TestDialNobody(t *testing.T) {
	t.Parallel()
	base := tempDir(t)
	for _, path := range []string{filepath.Join(base, "missing", "ctl.sock"), filepath.Join(base, "ctl.sock")} {
		if c, _, err := Dial(path, time.Second); c != nil || err != nil {
			t.Errorf("Dial(%s) = %v, %v; want nil, nil", path, c, err)
		}
	}
	file := filepath.Join(base, "file")
	os.WriteFile(file, nil, 0o600)
	var ne *NotSocketError
	if _, _, err := Dial(file, time.Second); !errors.As(err, &ne) {
		t.Errorf("Dial(regular file) = %v; want a *NotSocketError", err)
	}
	open := filepath.Join(t.TempDir(), "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o755)
	var de *DirError
	if _, _, err := Dial(filepath.Join(open, "ctl.sock"), time.Second); !errors.As(err, &de) {
		t.Errorf("Dial in a 0755 directory = %v; want a *DirError", err)
	}
}

// PeerCred of a socketpair names ourselves.
func TestPeerCredSocketpair(t *testing.T) {
	t.Parallel()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[1])
	cred, err := PeerCredFD(fds[1])
	if err != nil || cred.PID != os.Getpid() || cred.UID != os.Geteuid() {
		t.Errorf("PeerCredFD = %+v, %v; want us", cred, err)
	}
	f := os.NewFile(uintptr(fds[0]), "pair")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if cred, err := CheckPeer(c.(*net.UnixConn)); err != nil || cred.PID != os.Getpid() {
		t.Errorf("CheckPeer = %+v, %v; want us", cred, err)
	}
	if _, err := PeerCredFD(-1); err == nil {
		t.Errorf("PeerCredFD(-1) = nil error")
	}
}
