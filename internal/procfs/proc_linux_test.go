package procfs

import (
	"errors"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"syscall"
	"testing"
	"time"
)

func TestReadStatSelf(t *testing.T) {
	t.Parallel()
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatalf("ReadStat(self): %v", err)
	}
	if st.PID != os.Getpid() || st.PPID != os.Getppid() || st.PGID != syscall.Getpgrp() || st.StartTime == 0 || st.State != 'R' && st.State != 'S' {
		t.Errorf("ReadStat(self) = %+v; want pid %d, ppid %d, pgid %d, a start time, running", st, os.Getpid(), os.Getppid(), syscall.Getpgrp())
	}
	if !Alive(os.Getpid()) {
		t.Errorf("Alive(self) = false")
	}
}

// No such process: the error says so in a way callers can test for.
func TestReadStatGone(t *testing.T) {
	t.Parallel()
	const pid = 1 << 30 // above the kernel's PID_MAX_LIMIT (4194304)
	if _, err := ReadStat(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadStat(%d) error = %v; want one that wraps fs.ErrNotExist", pid, err)
	}
	if Alive(pid) {
		t.Errorf("Alive(%d) = true", pid)
	}
	if _, err := SocketInodes(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("SocketInodes(%d) error = %v; want one that wraps fs.ErrNotExist", pid, err)
	}
	if _, err := FDCount(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("FDCount(%d) error = %v; want one that wraps fs.ErrNotExist", pid, err)
	}
}

// A child is listed by Children, alive while it runs, and not alive — but
// still listed, as a zombie — once it has exited and before it is reaped.
func TestChildrenAndZombies(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	defer cmd.Wait()
	defer cmd.Process.Kill()
	kids, err := Children(os.Getpid())
	if err != nil {
		t.Fatalf("Children(self): %v", err)
	}
	i := slices.IndexFunc(kids, func(s Stat) bool { return s.PID == pid })
	if i < 0 || kids[i].PPID != os.Getpid() {
		t.Fatalf("Children(self) = %+v; want pid %d among them", kids, pid)
	}
	if !Alive(pid) {
		t.Errorf("Alive(%d) = false while it sleeps", pid)
	}
	cmd.Process.Kill()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := ReadStat(pid)
		if err != nil {
			t.Fatalf("ReadStat(%d) before it was reaped: %v", pid, err)
		}
		if st.State == 'Z' {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d is in state %c 10s after SIGKILL; want Z", pid, st.State)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if Alive(pid) {
		t.Errorf("Alive(%d) = true for a zombie", pid)
	}
	kids, _ = Children(os.Getpid())
	if i := slices.IndexFunc(kids, func(s Stat) bool { return s.PID == pid }); i < 0 || !kids[i].Zombie() {
		t.Errorf("Children(self) = %+v; want pid %d among them, a zombie", kids, pid)
	}
	cmd.Wait()
	if _, err := ReadStat(pid); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadStat(%d) once reaped: %v; want fs.ErrNotExist", pid, err)
	}
}

func TestPids(t *testing.T) {
	t.Parallel()
	pids, err := Pids()
	if err != nil || !slices.Contains(pids, os.Getpid()) || !slices.IsSorted(pids) {
		t.Errorf("Pids() = %d pids, %v; want a sorted list with ours (%d)", len(pids), err, os.Getpid())
	}
}

// A listener we open shows up among our socket inodes, by the inode fstat
// gives its descriptor, and in /proc/net/tcp as listening.
func TestSocketInodes(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	var serr error
	rc.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) })
	if serr != nil {
		t.Fatal(serr)
	}
	inodes, err := SocketInodes(os.Getpid())
	if err != nil || !slices.Contains(inodes, st.Ino) {
		t.Errorf("SocketInodes(self) = %v, %v; want %d among them", inodes, err, st.Ino)
	}
	// A second descriptor of the same socket counts too.
	var dup int
	rc.Control(func(fd uintptr) { dup, serr = syscall.Dup(int(fd)) })
	if serr != nil {
		t.Fatal(serr)
	}
	defer syscall.Close(dup)
	if n, err := SocketFDs(os.Getpid(), map[uint64]bool{st.Ino: true}); n != 2 || err != nil {
		t.Errorf("SocketFDs(self, the listener) = %d, %v; want 2 (the listener and its dup)", n, err)
	}
	socks, err := NetTCP()
	if err != nil {
		t.Fatalf("NetTCP: %v", err)
	}
	want := TCPSocket{Local: netip.MustParseAddrPort(ln.Addr().String()), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: TCPListen, Inode: st.Ino}
	if !slices.Contains(socks, want) {
		t.Errorf("NetTCP() has no %+v among %d sockets", want, len(socks))
	}
}

func TestFDCount(t *testing.T) {
	// Not parallel: other tests open descriptors.
	before, err := FDCount(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	after, err := FDCount(os.Getpid())
	f.Close()
	if err != nil || after != before+1 {
		t.Errorf("FDCount(self) = %d, %v after opening a file; want %d", after, err, before+1)
	}
	links, err := FDLinks(os.Getpid())
	if err != nil || links[0] == "" {
		t.Errorf("FDLinks(self) = %v, %v; want descriptor 0 among them", links, err)
	}
	if kib, err := VmRSS(os.Getpid()); err != nil || kib <= 0 {
		t.Errorf("VmRSS(self) = %d, %v; want a size", kib, err)
	}
}

// A process that runs this test started before now, and since the machine
// booted.
func TestStarted(t *testing.T) {
	st, err := ReadStat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	started, err := Started(st)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := BootTime()
	if err != nil {
		t.Fatal(err)
	}
	// Ticks are hundredths of a second; btime is whole seconds.
	if now := time.Now(); started.After(now.Add(time.Second)) || started.Before(boot) {
		t.Errorf("Started = %v; want between the boot (%v) and now (%v)", started, boot, now)
	}
}
