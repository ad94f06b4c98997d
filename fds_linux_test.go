//go:build linux

package baton

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/batonhq/baton/internal/proctest"
)

func init() {
	proctest.Register("fds-successor", fdsSuccessorMain)
}

// fdsSuccessorMain is the successor of TestUpgradeOneDescriptorPerSocket:
// it takes over FDS_LISTEN sockets by address and FDS_NAMED by name, and
// writes to FDS_OUT what it received and what its sockets cost it, before
// Ready (so the report is there when Upgrade returns). It then serves until
// SIGTERM.
func fdsSuccessorMain() {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	u, err := New(Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fds-successor:", err)
		os.Exit(3)
	}
	u.reg.mu.Lock()
	received := len(u.reg.entries)
	u.reg.mu.Unlock()
	nListen, _ := strconv.Atoi(os.Getenv("FDS_LISTEN"))
	nNamed, _ := strconv.Atoi(os.Getenv("FDS_NAMED"))
	var cs []syscall.Conn
	for range nListen {
		l, err := u.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fmt.Fprintln(os.Stderr, "fds-successor:", err)
			os.Exit(3)
		}
		cs = append(cs, l.(syscall.Conn))
	}
	for i := range nNamed {
		l, err := u.Listener("named" + strconv.Itoa(i))
		if err != nil {
			fmt.Fprintln(os.Stderr, "fds-successor:", err)
			os.Exit(3)
		}
		cs = append(cs, l.(syscall.Conn))
	}
	inodes := map[uint64]bool{}
	blocking := 0
	for _, c := range cs {
		ino, nonblock, err := inspectSocket(c)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fds-successor:", err)
			os.Exit(3)
		}
		inodes[ino] = true
		if !nonblock {
			blocking++
		}
	}
	report := fmt.Sprintf("received=%d sockets=%d fds=%d blocking=%d\n", received, len(inodes), socketFds(inodes), blocking)
	if err := os.WriteFile(os.Getenv("FDS_OUT"), []byte(report), 0o600); err != nil {
		fmt.Fprintln(os.Stderr, "fds-successor:", err)
		os.Exit(3)
	}
	if err := u.Ready(); err != nil {
		fmt.Fprintln(os.Stderr, "fds-successor:", err)
		os.Exit(3)
	}
	<-sigs
	u.Stop()
}

// inspectSocket returns the inode of c's socket and whether its open file
// description is non-blocking, read from a copy made through SyscallConn:
// Fd would make it blocking for every holder, which is what is checked.
func inspectSocket(c syscall.Conn) (ino uint64, nonblock bool, err error) {
	fd, err := dupConn(c)
	if err != nil {
		return 0, false, err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return 0, false, err
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return 0, false, err
	}
	return uint64(st.Ino), fl&unix.O_NONBLOCK != 0, nil
}

// A real upgrade of 300 listeners (more than two batches): each process
// holds one descriptor per socket, the sockets are non-blocking in both,
// and a listener closed before the upgrade is not passed on.
func TestUpgradeOneDescriptorPerSocket(t *testing.T) {
	// Not parallel: it starts a real successor from this test binary.
	const nListen, nNamed = 200, 100
	u := newTestUpgrader(t)
	var cs []syscall.Conn
	for range nListen {
		l, err := u.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		cs = append(cs, l.(syscall.Conn))
	}
	for i := range nNamed {
		l := tcpListener(t)
		if err := u.Add("named"+strconv.Itoa(i), l); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, l)
	}
	// Closed before the upgrade: the successor never sees it.
	gone, err := u.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gone.Close()
	if err := u.Ready(); err != nil {
		t.Fatal(err)
	}
	inodes := connInodes(t, cs)
	before := socketFds(inodes)

	out := filepath.Join(t.TempDir(), "report")
	err = u.handover(u.spawner(spawn{env: []string{
		"PROCTEST_HELPER=fds-successor",
		"FDS_OUT=" + out,
		"FDS_LISTEN=" + strconv.Itoa(nListen),
		"FDS_NAMED=" + strconv.Itoa(nNamed),
	}}), 0)
	if err != nil {
		t.Fatalf("upgrade to the fds-successor helper: %v", err)
	}
	succ := u.successor
	t.Cleanup(func() {
		succ.proc.Signal(syscall.SIGTERM)
		select {
		case <-succ.exited:
			if !succ.state.Success() {
				t.Errorf("successor %d: %v; want exit 0 after SIGTERM", succ.proc.Pid, succ.state)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("successor %d still running 10s after SIGTERM; killing it", succ.proc.Pid)
			succ.kill()
		}
	})

	n := nListen + nNamed
	after := socketFds(inodes)
	t.Logf("incumbent: %d sockets behind %d descriptors before the upgrade, %d after", n, before, after)
	if before != n || after != n {
		t.Errorf("incumbent: %d registered sockets behind %d descriptors before the upgrade and %d after; want %d, one each", n, before, after, n)
	}
	blocking := 0
	for _, c := range cs {
		if _, nonblock, err := inspectSocket(c); err != nil {
			t.Fatal(err)
		} else if !nonblock {
			blocking++
		}
	}
	if blocking > 0 {
		t.Errorf("incumbent: %d of %d sockets in blocking mode after the upgrade; want none", blocking, n)
	}

	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("the successor's report: %v", err)
	}
	report := strings.TrimSpace(string(b))
	t.Logf("successor: %s", report)
	if want := fmt.Sprintf("received=%d sockets=%d fds=%d blocking=0", n, n, n); report != want {
		t.Errorf("successor reported %q; want %q: every socket but the closed one received, one descriptor each, all non-blocking", report, want)
	}
}
