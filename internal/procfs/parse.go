package procfs

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// ErrNotSupported is returned by every reader on systems without a Linux
// /proc.
var ErrNotSupported = errors.New("procfs: /proc is Linux only")

// Stat is what baton uses of /proc/PID/stat (proc_pid_stat(5)).
type Stat struct {
	PID int
	// Comm is the kernel's name for the process: the executable's base
	// name cut to 15 bytes, unless the process renamed itself.
	Comm string
	// State is one ASCII letter (anything else is refused): R running, S sleeping, D disk sleep, T
	// stopped, t traced, Z zombie (exited, not yet reaped), X dead, I
	// idle (kernel threads)...
	State byte
	PPID  int
	PGID  int
	// Session is the session id (setsid(2)).
	Session int
	// StartTime is when the process started, in clock ticks after boot.
	// With PID it names a process for good: a pid is reused, a (pid,
	// start time) pair is not.
	StartTime uint64
}

// Zombie reports whether the process has exited and waits to be reaped
// (Z), or is being torn down (X; x on kernels before 3.14).
func (s Stat) Zombie() bool { return s.State == 'Z' || s.State == 'X' || s.State == 'x' }

// statFields is how many space-separated fields follow the command name
// up to and including starttime (fields 3 to 22 of proc_pid_stat(5)).
const statFields = 20

// ParseStat decodes the contents of /proc/PID/stat.
//
// The line reads "PID (COMM) STATE PPID PGID SESSION ... STARTTIME ...".
// COMM may hold anything, ')' and spaces included, so it ends at the last
// ')' of the line. Anything else out of the kernel's format is an error.
func ParseStat(b []byte) (Stat, error) {
	open := bytes.IndexByte(b, '(')
	end := bytes.LastIndexByte(b, ')')
	if open < 1 || end < open || b[open-1] != ' ' {
		return Stat{}, fmt.Errorf("procfs: stat %.80q: want \"PID (COMM) ...\"", b)
	}
	var st Stat
	var err error
	if st.PID, err = atoiPositive(string(b[:open-1])); err != nil {
		return Stat{}, fmt.Errorf("procfs: stat %.80q: pid: %w", b, err)
	}
	st.Comm = string(b[open+1 : end])
	rest := b[end+1:]
	// After the command name: exactly one space, the state letter, one
	// space: no field may be missing or empty.
	if len(rest) < 4 || rest[0] != ' ' || rest[2] != ' ' || !letter(rest[1]) {
		return Stat{}, fmt.Errorf("procfs: stat %.80q: want \") STATE PPID ...\" after the command name", b)
	}
	st.State = rest[1]
	f := strings.Split(strings.TrimSuffix(string(rest[3:]), "\n"), " ")
	if len(f) < statFields-1 {
		return Stat{}, fmt.Errorf("procfs: stat %.80q: %d fields after the state, want at least %d", b, len(f), statFields-1)
	}
	ints := []struct {
		name string
		p    *int
		s    string
	}{{"ppid", &st.PPID, f[0]}, {"pgrp", &st.PGID, f[1]}, {"session", &st.Session, f[2]}}
	for _, i := range ints {
		// The kernel writes 0 for a parent outside our pid namespace.
		n, err := strconv.Atoi(i.s)
		if err != nil || n < 0 || i.s != strconv.Itoa(n) {
			return Stat{}, fmt.Errorf("procfs: stat %.80q: %s %q is not a pid", b, i.name, i.s)
		}
		*i.p = n
	}
	for i, s := range f[:statFields-1] {
		// Every field up to starttime is a decimal number: a blank one
		// (two spaces) means the line is not the kernel's.
		if !decimal(s) {
			return Stat{}, fmt.Errorf("procfs: stat %.80q: field %d %q is not a number", b, i+4, s)
		}
	}
	if st.StartTime, err = strconv.ParseUint(f[statFields-2], 10, 64); err != nil {
		return Stat{}, fmt.Errorf("procfs: stat %.80q: starttime %q: %w", b, f[statFields-2], err)
	}
	return st, nil
}

// letter reports whether c is an ASCII letter: every state the kernel
// writes is one (R, S, D, Z, T, t, X, I, ...).
func letter(c byte) bool { return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' }

// decimal reports whether s is an optional '-' and one or more digits,
// as the kernel prints a number (unsigned fields can exceed int64).
func decimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// atoiPositive parses a pid: decimal digits only, no sign, no leading
// zero, above 0.
func atoiPositive(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, err
	}
	if n <= 0 || s != strconv.Itoa(n) {
		return 0, fmt.Errorf("%q is not a pid", s)
	}
	return n, nil
}

// ParseSocketLink returns the inode of a descriptor's link that names a
// socket, "socket:[INODE]"; ok is false for anything else ("pipe:[7]",
// "/dev/null", "anon_inode:[eventpoll]").
func ParseSocketLink(link string) (inode uint64, ok bool) {
	s, found := strings.CutPrefix(link, "socket:[")
	if !found {
		return 0, false
	}
	s, found = strings.CutSuffix(s, "]")
	if !found || s == "" || s[0] == '+' {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || strconv.FormatUint(n, 10) != s {
		return 0, false
	}
	return n, true
}

// ParseVmRSS returns the resident set size from the contents of
// /proc/PID/status (its "VmRSS: N kB" line), in KiB. A kernel thread has
// no such line: that is an error.
func ParseVmRSS(status []byte) (kib int64, err error) {
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("procfs: VmRSS line %q: want <number> kB", sc.Text())
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || n < 0 || f[0] != strconv.FormatInt(n, 10) {
			return 0, fmt.Errorf("procfs: VmRSS line %q: want <number> kB", sc.Text())
		}
		return n, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("procfs: status: %w", err)
	}
	return 0, errors.New("procfs: status: no VmRSS line")
}

// TCP states as /proc/net/tcp writes them (include/net/tcp_states.h).
const (
	TCPEstablished = 0x01
	TCPTimeWait    = 0x06
	TCPListen      = 0x0A
)

// A TCPSocket is one line of /proc/net/tcp or /proc/net/tcp6.
type TCPSocket struct {
	Local, Remote netip.AddrPort
	State         uint8 // TCPListen, TCPEstablished, ...
	Inode         uint64
}

// ParseNetTCP decodes the contents of /proc/net/tcp or /proc/net/tcp6:
// a header line, then one socket per line. Addresses are hexadecimal, each
// 32-bit word in host (little-endian on every platform baton runs on)
// order; ports are big-endian hexadecimal. A line out of that format is
// an error: a test that counts sockets must not miss one silently.
func ParseNetTCP(b []byte) ([]TCPSocket, error) {
	var out []TCPSocket
	for i, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if i == 0 || len(f) == 0 {
			continue // the header, the end
		}
		if len(f) < 10 {
			return nil, fmt.Errorf("procfs: net/tcp line %d %.120q: %d fields, want at least 10", i+1, line, len(f))
		}
		var s TCPSocket
		var err error
		if s.Local, err = parseHexAddrPort(f[1]); err != nil {
			return nil, fmt.Errorf("procfs: net/tcp line %d: local address: %w", i+1, err)
		}
		if s.Remote, err = parseHexAddrPort(f[2]); err != nil {
			return nil, fmt.Errorf("procfs: net/tcp line %d: remote address: %w", i+1, err)
		}
		st, err := strconv.ParseUint(f[3], 16, 8)
		if err != nil || len(f[3]) != 2 {
			return nil, fmt.Errorf("procfs: net/tcp line %d: state %q: want two hex digits", i+1, f[3])
		}
		s.State = uint8(st)
		if s.Inode, err = strconv.ParseUint(f[9], 10, 64); err != nil {
			return nil, fmt.Errorf("procfs: net/tcp line %d: inode %q: %w", i+1, f[9], err)
		}
		out = append(out, s)
	}
	return out, nil
}

// parseHexAddrPort decodes "0100007F:1F90" (127.0.0.1:8080) or its
// 32-hex-digit IPv6 form.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	h, p, ok := strings.Cut(s, ":")
	if !ok || len(p) != 4 || (len(h) != 8 && len(h) != 32) {
		return netip.AddrPort{}, fmt.Errorf("%q: want HEXADDR:HEXPORT", s)
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q: port: %w", s, err)
	}
	var raw [16]byte
	for w := 0; w < len(h)/8; w++ {
		v, err := strconv.ParseUint(h[w*8:w*8+8], 16, 32)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("%q: address: %w", s, err)
		}
		// Each word as the kernel held it in memory: little-endian.
		raw[w*4], raw[w*4+1], raw[w*4+2], raw[w*4+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
	}
	var a netip.Addr
	if len(h) == 8 {
		a = netip.AddrFrom4([4]byte(raw[:4]))
	} else {
		a = netip.AddrFrom16(raw)
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// ClockTicks is USER_HZ, the unit of the times in /proc/PID/stat: 100 on
// every Linux ABI (the kernel converts to it whatever its own HZ).
const ClockTicks = 100

// ParseBootTime reads the boot time, the "btime" line (seconds since the
// epoch), out of /proc/stat.
func ParseBootTime(b []byte) (time.Time, error) {
	for _, line := range strings.Split(string(b), "\n") {
		v, ok := strings.CutPrefix(line, "btime ")
		if !ok {
			continue
		}
		if !decimal(v) {
			return time.Time{}, fmt.Errorf("procfs: stat: btime %q: want a decimal number", v)
		}
		sec, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("procfs: stat: btime %q: %w", v, err)
		}
		return time.Unix(sec, 0), nil
	}
	return time.Time{}, errors.New("procfs: stat: no btime line")
}
