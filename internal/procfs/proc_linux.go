package procfs

import (
	"fmt"
	"os"
	"slices"
	"strconv"
	"time"
)

// root is where the kernel mounts proc.
const root = "/proc/"

// ReadStat reads /proc/PID/stat. If there is no such process the error
// wraps fs.ErrNotExist.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(root + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	st, err := ParseStat(b)
	if err != nil {
		return Stat{}, err
	}
	if st.PID != pid {
		return Stat{}, fmt.Errorf("procfs: /proc/%d/stat names pid %d", pid, st.PID)
	}
	return st, nil
}

// Alive reports whether pid runs: it exists and is neither a zombie nor
// dead. kill(pid, 0) is no test: it succeeds on a zombie, which lingers
// until its parent reaps it.
func Alive(pid int) bool {
	st, err := ReadStat(pid)
	return err == nil && !st.Zombie()
}

// Pids returns the pid of every process in /proc (of our pid namespace),
// in ascending order.
func Pids() ([]int, error) {
	ents, err := os.ReadDir(root)
	if err != nil {
		return nil, err
	}
	pids := make([]int, 0, len(ents))
	for _, e := range ents {
		if pid, err := atoiPositive(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	slices.Sort(pids)
	return pids, nil
}

// Children returns every process whose parent is pid, zombies included
// (callers filter by State), in ascending pid order. A process that exits
// while /proc is walked is left out.
//
// It walks /proc rather than reading /proc/PID/task/TID/children, which
// needs CONFIG_PROC_CHILDREN and lists only the children of one thread.
func Children(pid int) ([]Stat, error) {
	pids, err := Pids()
	if err != nil {
		return nil, err
	}
	var out []Stat
	for _, p := range pids {
		if st, err := ReadStat(p); err == nil && st.PPID == pid {
			out = append(out, st)
		}
	}
	return out, nil
}

// FDLinks returns what each open descriptor of pid refers to, by number:
// "socket:[1234]", "/dev/null", "anon_inode:[eventpoll]", "pipe:[77]"...
// A descriptor closed while the directory is read is left out.
func FDLinks(pid int) (map[int]string, error) {
	dir := root + strconv.Itoa(pid) + "/fd/"
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	links := make(map[int]string, len(ents))
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, err := os.Readlink(dir + e.Name()); err == nil {
			links[n] = l
		}
	}
	return links, nil
}

// SocketInodes returns the inodes of the sockets among pid's descriptors,
// in ascending order, each once (several descriptors may share one).
func SocketInodes(pid int) ([]uint64, error) {
	links, err := FDLinks(pid)
	if err != nil {
		return nil, err
	}
	var out []uint64
	for _, l := range links {
		if ino, ok := ParseSocketLink(l); ok {
			out = append(out, ino)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// SocketFDs counts pid's descriptors that refer to one of the sockets in
// inodes: what holding those sockets costs pid in descriptors (a socket
// may sit behind several). Counting by inode ignores whatever else the
// process opens meanwhile.
func SocketFDs(pid int, inodes map[uint64]bool) (int, error) {
	links, err := FDLinks(pid)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, l := range links {
		if ino, ok := ParseSocketLink(l); ok && inodes[ino] {
			n++
		}
	}
	return n, nil
}

// FDCount returns how many descriptors pid has open.
func FDCount(pid int) (int, error) {
	ents, err := os.ReadDir(root + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0, err
	}
	return len(ents), nil
}

// VmRSS returns the resident set size of pid, in KiB.
func VmRSS(pid int) (kib int64, err error) {
	b, err := os.ReadFile(root + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	return ParseVmRSS(b)
}

// NetTCP returns the TCP sockets, IPv4 and IPv6, of our network
// namespace. The files are not read atomically: on a host where
// connections churn a socket can be missed; sock_diag is the way to
// count them exactly.
func NetTCP() ([]TCPSocket, error) {
	var out []TCPSocket
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		b, err := os.ReadFile(root + f)
		if err != nil {
			if f == "net/tcp6" && os.IsNotExist(err) {
				continue // IPv6 disabled
			}
			return nil, err
		}
		s, err := ParseNetTCP(b)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	return out, nil
}

// BootTime is when the system booted, from /proc/stat.
func BootTime() (time.Time, error) {
	b, err := os.ReadFile(root + "stat")
	if err != nil {
		return time.Time{}, err
	}
	return ParseBootTime(b)
}

// Started is when the process of st started: the boot time plus its
// start time in clock ticks.
func Started(st Stat) (time.Time, error) {
	boot, err := BootTime()
	if err != nil {
		return time.Time{}, err
	}
	return boot.Add(time.Duration(st.StartTime) * time.Second / ClockTicks), nil
}
