package supervisor

import (
	"net"
	"os"
	"strconv"
	"strings"
)

// What the master reads of other processes in /proc.

// children lists the live pids whose parent is pid (zombies not counted:
// the reaper takes them).
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, state := procStat(c); ppid == pid && state != "Z" {
			out = append(out, c)
		}
	}
	return out
}

// connectionsOf counts the TCP connections pid holds that came from the
// master's TCP listeners: the sockets among its descriptors whose local
// port is a listener's. Connections of its children, and over unix
// sockets, are not counted; -1 if the kernel would not say.
func (m *Master) connectionsOf(pid int) int {
	ports := map[uint16]bool{}
	for _, s := range m.socks {
		if _, p, err := net.SplitHostPort(s.tcp); err == nil {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				ports[uint16(n)] = true
			}
		}
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	inodes := map[uint32]bool{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		l, _ := os.Readlink(dir + e.Name())
		if ino, ok := strings.CutPrefix(l, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 32); err == nil {
				inodes[uint32(n)] = true
			}
		}
	}
	if len(ports) == 0 || len(inodes) == 0 {
		return 0
	}
	n, err := acceptedConns(ports, inodes)
	if err != nil {
		m.log.Debug("cannot count the connections of a generation", "pid", pid, "err", err)
		return -1
	}
	return n
}

// procStat returns the parent pid and state of pid, from /proc.
func procStat(pid int) (ppid int, state string) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, ""
	}
	return parseProcStat(b)
}

// parseProcStat reads the parent pid and state out of /proc/PID/stat. The
// command name before them is in parentheses and may hold anything, ')'
// and spaces included: the fields start after the last ')'.
func parseProcStat(b []byte) (ppid int, state string) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, ""
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0]
}
