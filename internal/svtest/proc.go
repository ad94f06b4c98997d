//go:build linux

package svtest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/reaper"
	"golang.org/x/sys/unix"
)

// BecomeSubreaper makes this process the child subreaper of everything it
// starts (PR_SET_CHILD_SUBREAPER): a process orphaned below it — a
// server left behind by a supervisor that died or exited first — is
// reparented here, where teardown can find it, kill it and reap it,
// instead of to PID 1. Call it from TestMain before any test runs.
//
// Supervisors still reap their own children: a subreaper only adopts
// orphans. Being one keeps every process a test causes in the test's own
// tree, where teardown can account for it, and does not depend on PID 1:
// in a container or a sandbox that may be a program that reaps late (by
// seconds, on the machine these tests were written on) or never.
func BecomeSubreaper() error {
	if err := reaper.BecomeSubreaper(); err != nil {
		return fmt.Errorf("svtest: %w", err)
	}
	return nil
}

// A Process is what /proc says about one process. Of a zombie only PID,
// PPID, State and Comm are known: its cwd and exe links are gone and its
// command line is empty.
type Process struct {
	PID, PPID int
	State     string // "R", "S", "Z", … as in /proc/PID/stat
	Comm      string // the kernel's name for it: the executable's base name, cut to 15 bytes
	Cmdline   string // argv joined with spaces
	Cwd       string
	Exe       string
}

func (p Process) String() string {
	return fmt.Sprintf("pid %d (parent %d, state %s, cwd %s): %s", p.PID, p.PPID, p.State, p.Cwd, p.Cmdline)
}

// Zombie reports whether p has exited and waits to be reaped.
func (p Process) Zombie() bool { return p.State == "Z" || p.State == "X" }

// readProcess reads /proc/PID, or returns false if the process is gone.
func readProcess(pid int) (Process, bool) {
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return Process{}, false
	}
	p := Process{PID: st.PID, PPID: st.PPID, State: string(st.State), Comm: st.Comm}
	dir := "/proc/" + strconv.Itoa(pid)
	if c, err := os.ReadFile(dir + "/cmdline"); err == nil {
		p.Cmdline = strings.TrimSpace(strings.ReplaceAll(string(c), "\x00", " "))
	}
	p.Cwd, _ = os.Readlink(dir + "/cwd")
	p.Exe, _ = os.Readlink(dir + "/exe")
	return p, true
}

// processes returns every process but this one for which keep is true.
// Processes that exit while /proc is read are left out.
func processes(keep func(Process) bool) []Process {
	pids, _ := procfs.Pids()
	var ps []Process
	self := os.Getpid()
	for _, pid := range pids {
		if pid == self {
			continue
		}
		if p, ok := readProcess(pid); ok && keep(p) {
			ps = append(ps, p)
		}
	}
	return ps
}

// ProcessesOf returns the running (not zombie) processes whose executable
// is exe, a path resolved the way the kernel resolves /proc/PID/exe.
func ProcessesOf(exe string) []Process {
	if real, err := filepath.EvalSymlinks(exe); err == nil {
		exe = real
	}
	return processes(func(p Process) bool { return !p.Zombie() && p.Exe == exe })
}

// ProcessesUnder returns the processes, zombies left out, that work in
// dir or below it, or whose command line names a path in it.
func ProcessesUnder(dir string) []Process { return processesUnder(dir) }

// ZombieChildren returns the zombies whose parent is one of parents and
// whose Comm is one of comms: processes that exited and nobody reaped.
func ZombieChildren(parents []int, comms ...string) []Process {
	return processes(func(p Process) bool {
		return p.Zombie() && slices.Contains(parents, p.PPID) && slices.Contains(comms, p.Comm)
	})
}

// FDs returns what each open descriptor of process pid refers to, by
// number: "socket:[1234]", "/dev/null", "anon_inode:[eventpoll]", ….
func FDs(pid int) (map[int]string, error) { return procfs.FDLinks(pid) }

// processesUnder returns the processes that work in dir or below it, or
// whose command line names a path in it: a supervisor of a service in
// dir, the service, and whatever the service started.
func processesUnder(dir string) []Process {
	return processes(func(p Process) bool {
		return within(p.Cwd, dir) || strings.Contains(p.Cmdline, dir+"/") || strings.HasSuffix(p.Cmdline, dir)
	})
}

func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// reapAdopted reaps the zombie children of this process whose Comm is in
// comms, and returns them. Those are orphans adopted by the subreaper;
// the names keep it away from the processes os/exec started and waits
// for itself (the supervisors and their control tools), whose zombies are
// not ours to take.
func reapAdopted(comms map[string]bool) []Process {
	self := os.Getpid()
	zombies := processes(func(p Process) bool { return p.PPID == self && p.Zombie() && comms[p.Comm] })
	for _, p := range zombies {
		reaper.Await(p.PID, 0) // a zombie: reaped at the first wait4
	}
	return zombies
}

// killAndReap sends SIGKILL to ps and waits up to d for them to be gone,
// reaping those that are our children.
func killAndReap(ps []Process, d time.Duration) error {
	for _, p := range ps {
		unix.Kill(p.PID, unix.SIGKILL)
	}
	deadline := time.Now().Add(d)
	for _, p := range ps {
		// Ours (adopted) are reaped; another's are done once gone or a
		// zombie its parent will reap.
		if err := reaper.Await(p.PID, time.Until(deadline)); err != nil {
			return fmt.Errorf("svtest: pid %d survived SIGKILL for %v", p.PID, d)
		}
	}
	return nil
}
