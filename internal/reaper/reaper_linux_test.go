package reaper

import (
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/procfs"
)

// The tests are not parallel: a running Reaper reaps every child of the
// test process, whichever test started it.

func TestMain(m *testing.M) {
	if err := BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// start starts argv as a child, without os/exec (whose Wait would race
// the Reaper).
func start(argv ...string) func() (int, error) {
	return func() (int, error) {
		pid, _, err := syscall.StartProcess(argv[0], argv, &syscall.ProcAttr{Files: []uintptr{0, 1, 2}})
		return pid, err
	}
}

func waitFor[T any](t *testing.T, c <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-c:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s within 10s", what)
	}
	panic("unreachable")
}

// A child's exit goes to the function registered for it, even when it
// exits before Spawn returns; an orphan reparented to the subreaper is
// reaped, counted and reported.
func TestSpawnAndOrphans(t *testing.T) {
	type orphan struct {
		pid int
		ws  syscall.WaitStatus
	}
	orphans := make(chan orphan, 4)
	r := &Reaper{OnOrphan: func(pid int, ws syscall.WaitStatus) { orphans <- orphan{pid, ws} }}
	r.Start()
	defer r.Stop()

	exited := make(chan syscall.WaitStatus, 1)
	pid, err := r.Spawn(start("/bin/sh", "-c", "exit 3"), func(ws syscall.WaitStatus) { exited <- ws })
	if err != nil {
		t.Fatal(err)
	}
	if ws := waitFor(t, exited, "exit of sh -c 'exit 3'"); !ws.Exited() || ws.ExitStatus() != 3 {
		t.Errorf("exit of pid %d = %v; want exit status 3", pid, ws)
	}

	// sh starts a sleep in the background and exits: the sleep is
	// orphaned, reparented here, and reaped when it ends.
	shExited := make(chan syscall.WaitStatus, 1)
	sh, err := r.Spawn(start("/bin/sh", "-c", "sleep 0.3 &"), func(ws syscall.WaitStatus) { shExited <- ws })
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, shExited, "exit of the shell")
	o := waitFor(t, orphans, "orphan")
	if o.pid == sh || !o.ws.Exited() || o.ws.ExitStatus() != 0 {
		t.Errorf("orphan = pid %d, %v; want the background sleep, exit status 0", o.pid, o.ws)
	}
	if n := r.Orphans(); n != 1 {
		t.Errorf("Orphans() = %d; want 1", n)
	}
	r.AddOrphans(5)
	if n := r.Orphans(); n != 6 {
		t.Errorf("Orphans() after AddOrphans(5) = %d; want 6", n)
	}
}

// A child that exits while the Reaper is stopped stays a zombie until it
// starts again, and its exit is then delivered: nothing is lost across a
// Stop (as around a master's exec).
func TestStopStart(t *testing.T) {
	var r Reaper
	r.Start()
	var mu sync.Mutex
	var got []int
	exited := make(chan struct{}, 1)
	pid, err := r.Spawn(start("/bin/sleep", "0.2"), func(syscall.WaitStatus) {
		mu.Lock()
		got = append(got, 1)
		mu.Unlock()
		exited <- struct{}{}
	})
	if err != nil {
		t.Fatal(err)
	}
	r.Stop()
	r.Stop() // twice: nothing more
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := procfs.ReadStat(pid)
		if err != nil {
			t.Fatalf("pid %d was reaped while the Reaper was stopped: %v", pid, err)
		}
		if st.Zombie() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pid %d still runs after 10s", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.Start()
	defer r.Stop()
	waitFor(t, exited, "exit after Start")
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 {
		t.Errorf("onExit called %d times; want once", len(got))
	}
}

// Track registers a child started before: its exit is not an orphan.
func TestTrack(t *testing.T) {
	pid, err := start("/bin/sleep", "0.1")()
	if err != nil {
		t.Fatal(err)
	}
	var r Reaper
	exited := make(chan syscall.WaitStatus, 1)
	r.Track(pid, func(ws syscall.WaitStatus) { exited <- ws })
	r.Start()
	defer r.Stop()
	waitFor(t, exited, "exit of a tracked child")
	if r.Orphans() != 0 {
		t.Errorf("Orphans() = %d; want 0", r.Orphans())
	}
	// A nil onExit is allowed: the child is simply reaped.
	if _, err := r.Spawn(start("/bin/true"), nil); err != nil {
		t.Fatal(err)
	}
	if left, err := WaitChildren(10 * time.Second); len(left) != 0 || err != nil {
		t.Errorf("WaitChildren = %v, %v; want none left", left, err)
	}
	if r.Orphans() != 0 {
		t.Errorf("Orphans() = %d after a tracked child with a nil onExit; want 0", r.Orphans())
	}
}

// Await, without a Reaper: an error while the child runs, nil once it
// has exited and been reaped.
func TestAwait(t *testing.T) {
	pid, err := start("/bin/sleep", "60")()
	if err != nil {
		t.Fatal(err)
	}
	if err := Await(pid, 50*time.Millisecond); err == nil {
		t.Errorf("Await(running child) = nil; want an error")
	}
	if left, _ := WaitChildren(50 * time.Millisecond); !slices.Contains(left, pid) {
		t.Errorf("WaitChildren = %v; want %d still there", left, pid)
	}
	syscall.Kill(pid, syscall.SIGKILL)
	if err := Await(pid, 10*time.Second); err != nil {
		t.Errorf("Await(killed child) = %v", err)
	}
	if _, err := procfs.ReadStat(pid); err == nil {
		t.Errorf("pid %d still in /proc after Await: not reaped", pid)
	}
	// Not our child: done once gone. Our parent (go test) runs on.
	if err := Await(os.Getppid(), 50*time.Millisecond); err == nil {
		t.Errorf("Await(our parent) = nil; want an error: it runs")
	}
}

// A zombie that is not ours: Await counts it done (its parent reaps it);
// AwaitGone waits, and when its parent exits without reaping it, it is
// reparented here and AwaitGone reaps it.
func TestAwaitGone(t *testing.T) {
	// sh starts a short sleep, then becomes a longer one that never
	// reaps it.
	parent, err := start("/bin/sh", "-c", "sleep 0.2 & exec sleep 1")()
	if err != nil {
		t.Fatal(err)
	}
	defer Await(parent, 10*time.Second)
	var child int
	deadline := time.Now().Add(10 * time.Second)
	for child == 0 || !zombie(child) {
		if kids, _ := procfs.Children(parent); len(kids) == 1 {
			child = kids[0].PID
		}
		if time.Now().After(deadline) {
			t.Fatalf("no zombie child of pid %d within 10s (child %d)", parent, child)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := Await(child, 0); err != nil {
		t.Errorf("Await(zombie of another) = %v; want nil", err)
	}
	if err := AwaitGone(child, 50*time.Millisecond); err == nil {
		t.Errorf("AwaitGone(zombie of another) = nil within 50ms; want an error while its parent lives")
	}
	if err := AwaitGone(child, 10*time.Second); err != nil {
		t.Errorf("AwaitGone(zombie, reparented here) = %v", err)
	}
	if _, err := procfs.ReadStat(child); err == nil {
		t.Errorf("pid %d still in /proc after AwaitGone", child)
	}
}

func zombie(pid int) bool {
	st, err := procfs.ReadStat(pid)
	return err == nil && st.Zombie()
}
