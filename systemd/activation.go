package systemd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

const (
	// ListenFDsStart is the first descriptor passed by socket activation
	// (SD_LISTEN_FDS_START); the others follow without gaps.
	ListenFDsStart = 3

	// MaxListenFDs bounds LISTEN_FDS: every passed descriptor is below
	// 65536, and a malformed variable cannot ask for billions.
	MaxListenFDs = 65536 - ListenFDsStart
)

// Activated is a descriptor passed by socket activation or from the file
// descriptor store.
type Activated struct {
	// Name is the descriptor's name from LISTEN_FDNAMES: the socket
	// unit's FileDescriptorName= (by default the unit's name), the
	// FDNAME= it was stored under, or "unknown" when the variable was
	// absent.
	Name string
	// Fd is the descriptor, ListenFDsStart or above.
	Fd int
}

// Listeners returns the descriptors the service manager passed to this
// process (sd_listen_fds_with_names(3)), close-on-exec from now on. The
// caller owns them: wrap each in an *os.File (os.NewFile) or close it.
//
// It removes LISTEN_PID, LISTEN_PIDFDID, LISTEN_FDS and LISTEN_FDNAMES from
// the environment, whatever they said, so that no child inherits them and
// a second call returns nothing. The variables are for this process only
// when LISTEN_PID is its pid; otherwise Listeners returns nothing and no
// error. (LISTEN_PIDFDID, which newer systemd adds to tell a recycled pid
// from the intended process, is not checked.)
//
// Call it early, before the program starts any other process: until then
// the passed descriptors are not close-on-exec, and a child would inherit
// them.
func Listeners() ([]Activated, error) {
	acts, err := ParseListenEnv(os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), os.Getenv("LISTEN_FDNAMES"), os.Getpid())
	for _, v := range [...]string{"LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(v)
	}
	if err != nil {
		return nil, err
	}
	if len(acts) > 0 && !supported {
		return nil, ErrNotSupported
	}
	for _, a := range acts {
		if err := closeOnExec(a.Fd); err != nil {
			return nil, fmt.Errorf("systemd: activated descriptor %d (%s): %w", a.Fd, a.Name, err)
		}
	}
	return acts, nil
}

// ParseListenEnv interprets the values of LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES for the process pid, as sd_listen_fds_with_names does; an
// empty value stands for an unset variable.
//
// The variables are for pid only when LISTEN_PID says so; otherwise, or
// when LISTEN_PID or LISTEN_FDS is unset, there are no descriptors and no
// error. It is an error when LISTEN_PID is not a pid, when LISTEN_FDS is
// not a number from 1 to MaxListenFDs, or when LISTEN_FDNAMES does not hold
// as many valid names, separated by ':', as LISTEN_FDS says. Without
// LISTEN_FDNAMES every name is "unknown".
func ParseListenEnv(listenPID, listenFDs, listenFDNames string, pid int) ([]Activated, error) {
	if listenPID == "" {
		return nil, nil
	}
	p, ok := parseDecimal(listenPID, maxPID)
	if !ok || p == 0 {
		return nil, fmt.Errorf("systemd: LISTEN_PID=%q is not a pid", listenPID)
	}
	if int(p) != pid {
		return nil, nil // for another process
	}
	if listenFDs == "" {
		return nil, nil
	}
	n, ok := parseDecimal(listenFDs, MaxListenFDs)
	if !ok || n == 0 {
		return nil, fmt.Errorf("systemd: LISTEN_FDS=%q: want a number from 1 to %d", listenFDs, MaxListenFDs)
	}
	var names []string
	if listenFDNames != "" {
		// Count before splitting, so that a huge variable cannot make a
		// huge slice.
		if c := strings.Count(listenFDNames, ":") + 1; uint64(c) != n {
			return nil, fmt.Errorf("systemd: LISTEN_FDNAMES has %d names for LISTEN_FDS=%d descriptors", c, n)
		}
		names = strings.Split(listenFDNames, ":")
		for _, name := range names {
			if !validFDName(name) {
				return nil, fmt.Errorf("systemd: LISTEN_FDNAMES: bad name %q", name)
			}
		}
	}
	acts := make([]Activated, n)
	for i := range acts {
		acts[i].Fd = ListenFDsStart + i
		if names != nil {
			acts[i].Name = names[i]
		} else {
			acts[i].Name = "unknown"
		}
	}
	return acts, nil
}

// ListenEnv returns the environment entries LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES that pass len(names) descriptors, placed at
// ListenFDsStart and up, to the process pid: the reverse of
// ParseListenEnv. It returns nil for no names, and an error for a pid
// that is not positive, more than MaxListenFDs names, or a name that is
// empty or not a valid descriptor name.
//
// LISTEN_PID must be the pid of the process that reads the variables,
// which a parent does not know before it forks; a program that execs
// itself (or a small helper) in the child can set them with its own pid
// just before the final exec, which keeps the pid.
func ListenEnv(pid int, names []string) ([]string, error) {
	if len(names) == 0 {
		return nil, nil
	}
	if pid <= 0 || pid > maxPID {
		return nil, fmt.Errorf("systemd: ListenEnv: bad pid %d", pid)
	}
	if len(names) > MaxListenFDs {
		return nil, errors.New("systemd: ListenEnv: too many descriptors")
	}
	for _, name := range names {
		if err := checkFDName(name); err != nil {
			return nil, err
		}
	}
	return []string{
		"LISTEN_PID=" + strconv.Itoa(pid),
		"LISTEN_FDS=" + strconv.Itoa(len(names)),
		"LISTEN_FDNAMES=" + strings.Join(names, ":"),
	}, nil
}

// Addr identifies the socket behind a: its network as the net package
// names it ("tcp", "udp", "unix", "unixgram" or "unixpacket"), its local
// address as net.Addr.String prints it ("127.0.0.1:8080", "[::]:8080",
// "/run/app.sock", "@abstract", "" for an unnamed Unix socket), and
// whether it is listening (SO_ACCEPTCONN). A TCP socket is "tcp" whether
// it is IPv4 or IPv6 (and whether it speaks MPTCP); the address shows the
// family. So a request for Listen("tcp", "127.0.0.1:8080") is answered by
// the activated socket whose Addr is "tcp", "127.0.0.1:8080", true.
//
// It is an error for a descriptor that is not a socket (ListenFIFO=, a
// stored file; the error then wraps ENOTSOCK), or a socket of another
// kind (SCTP, netlink, packet...).
func (a Activated) Addr() (network, address string, listening bool, err error) {
	if !supported {
		return "", "", false, ErrNotSupported
	}
	network, address, listening, err = socketAddr(a.Fd)
	if err != nil {
		return "", "", false, fmt.Errorf("systemd: descriptor %d (%s): %w", a.Fd, a.Name, err)
	}
	return network, address, listening, nil
}
