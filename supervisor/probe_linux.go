package supervisor

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"golang.org/x/sys/unix"
)

// The probes (Config.Ready "tcp" or an http:// URL) must tell whether the
// NEW generation serves. A connect alone proves nothing: the socket is
// shared, the kernel completes the handshake before anyone accepts, and
// the old generation accepts as well. So a probe connects, finds the
// server side of its connection (sock_diag), waits until it has
// an inode (someone accepted it) and looks for that inode among the
// descriptors of the new worker and its descendants. A connection the old
// generation took is closed and another tried. For http, the request is
// then sent on the connection the new worker accepted, and must get 200.

// The probe's pace. A probe that fails (the new worker does not accept
// yet, or the old one took the connection) tries again after probePause:
// often enough that a reload is not held up, seldom enough to be no load.
// A connect on loopback takes microseconds: probeDialTimeout only bounds
// a machine that cannot schedule. The http exchange must end within
// probeIOTimeout, a health check's usual bound. Once connected, the
// connection must be accepted within acceptWait, looked for every
// acceptPoll (the kernel does not say when a queued connection is
// accepted: the probe asks it again). A sock_diag answer comes at once,
// or within sockDiagTimeout on a machine that cannot schedule.
const (
	probePause       = 20 * time.Millisecond
	probeDialTimeout = time.Second
	probeIOTimeout   = 2 * time.Second
	acceptWait       = time.Second
	acceptPoll       = 5 * time.Millisecond
	sockDiagTimeout  = time.Second
)

func (m *Master) probe(g *generation) {
	for {
		ok, err := m.probeOnce(g)
		if ok {
			m.send(readyEvent{g})
			return
		}
		if err != nil {
			m.log.Debug("ready probe", "generation", g.n, "err", err)
		}
		select {
		case <-g.probeStop:
			return
		case <-time.After(probePause):
		}
	}
}

func (m *Master) probeOnce(g *generation) (bool, error) {
	c, err := net.DialTimeout("tcp", dialable(m.probeTo), probeDialTimeout)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(probeIOTimeout))
	tc := c.(*net.TCPConn)
	mine, err := acceptedBy(tc, g.pid, g.probeStop)
	if err != nil || !mine {
		return false, err
	}
	if m.probeU == nil {
		return true, nil
	}
	req, _ := http.NewRequest("GET", m.probeU.String(), nil)
	req.Close = true
	if err := req.Write(c); err != nil {
		return false, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s", m.probeU, resp.Status)
	}
	return true, nil
}

// dialable turns a wildcard listening address into a loopback one.
func dialable(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// acceptedBy waits until the server side of c is accepted and reports
// whether pid or one of its descendants holds it.
func acceptedBy(c *net.TCPConn, pid int, stop <-chan struct{}) (bool, error) {
	client, server := c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr)
	deadline := time.Now().Add(acceptWait)
	for {
		inode, err := socketInode(server, client)
		if err != nil {
			return false, err
		}
		if inode != 0 {
			return holds(pid, uint64(inode)), nil
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("probe connection from %v not accepted within %v", client, acceptWait)
		}
		select {
		case <-stop:
			return false, nil
		case <-time.After(acceptPoll):
		}
	}
}

// socketInode asks the kernel (sock_diag, the exact lookup of one TCP
// socket: no dump of a table that holds every TIME_WAIT connection) for
// the inode of the socket bound to local and connected to remote: 0
// while it waits in the accept queue.
func socketInode(local, remote *net.TCPAddr) (uint32, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return 0, os.NewSyscallError("socket(NETLINK_SOCK_DIAG)", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(sockDiagTimeout.Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	families := []uint8{unix.AF_INET6}
	if local.IP.To4() != nil {
		// A dual-stack listener has AF_INET6 sockets with mapped addresses.
		families = []uint8{unix.AF_INET, unix.AF_INET6}
	}
	var last error
	for _, fam := range families {
		req := diagRequest(fam, local, remote)
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return 0, os.NewSyscallError("sendto(sock_diag)", err)
		}
		buf := make([]byte, 8192)
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			return 0, os.NewSyscallError("recvfrom(sock_diag)", err)
		}
		inode, err := diagInode(buf[:n])
		if err == nil {
			return inode, nil
		}
		last = err
	}
	return 0, last
}

// diagRequest is an nlmsghdr and an inet_diag_req_v2 for one socket.
func diagRequest(family uint8, local, remote *net.TCPAddr) []byte {
	const hdr, body = 16, 56
	b := make([]byte, hdr+body)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], hdr+body)
	ne.PutUint16(b[4:], unix.SOCK_DIAG_BY_FAMILY)
	ne.PutUint16(b[6:], unix.NLM_F_REQUEST)
	ne.PutUint32(b[8:], 1)
	r := b[hdr:]
	r[0], r[1] = family, unix.IPPROTO_TCP
	ne.PutUint32(r[4:], 0xffffffff) // every state
	binary.BigEndian.PutUint16(r[8:], uint16(local.Port))
	binary.BigEndian.PutUint16(r[10:], uint16(remote.Port))
	putIP(r[12:28], family, local.IP)
	putIP(r[28:44], family, remote.IP)
	ne.PutUint32(r[48:], 0xffffffff) // INET_DIAG_NOCOOKIE
	ne.PutUint32(r[52:], 0xffffffff)
	return b
}

func putIP(dst []byte, family uint8, ip net.IP) {
	if family == unix.AF_INET {
		copy(dst, ip.To4())
	} else {
		copy(dst, ip.To16())
	}
}

// diagInode reads the inode out of a sock_diag answer: an inet_diag_msg,
// or an error message (ENOENT: no such socket).
func diagInode(b []byte) (uint32, error) {
	ne := binary.NativeEndian
	if len(b) < 16 {
		return 0, errors.New("sock_diag: short answer")
	}
	switch typ := ne.Uint16(b[4:]); typ {
	case unix.NLMSG_ERROR:
		if len(b) >= 20 {
			if e := int32(ne.Uint32(b[16:])); e != 0 {
				return 0, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
			}
		}
		return 0, errors.New("sock_diag: error")
	case unix.SOCK_DIAG_BY_FAMILY:
		// inet_diag_msg: family, state, timer, retrans, sockid (48),
		// expires, rqueue, wqueue, uid, inode.
		if len(b) < 16+72 {
			return 0, errors.New("sock_diag: short inet_diag_msg")
		}
		return ne.Uint32(b[16+68:]), nil
	default:
		return 0, fmt.Errorf("sock_diag: answer of type %d", typ)
	}
}

// holds reports whether pid or a descendant has a descriptor for the
// socket of inode.
func holds(pid int, inode uint64) bool {
	kids := map[int][]int{}
	pids, _ := procfs.Pids()
	for _, p := range pids {
		if st, err := procfs.ReadStat(p); err == nil && st.PPID > 0 {
			kids[st.PPID] = append(kids[st.PPID], p)
		}
	}
	todo := []int{pid}
	for len(todo) > 0 {
		p := todo[0]
		todo = append(todo[1:], kids[p]...)
		inodes, _ := procfs.SocketInodes(p)
		if _, found := slices.BinarySearch(inodes, inode); found {
			return true
		}
	}
	return false
}

// connectionsOf counts the TCP connections pid holds that came from the
// master's TCP listeners: the sockets among its descriptors whose local
// port is a listener's. Connections of its children, and over unix
// sockets, are not counted; -1 if the kernel would not say.
func (m *Master) connectionsOf(pid int) int {
	return m.countConns(pid, heldStates)
}

// establishedOf is connectionsOf for the connections in state ESTABLISHED
// only: those a client may still be using. It reads nothing of the run
// loop's, so any goroutine may call it: m.tcpPorts and m.log do not
// change once New has returned (m.socks does, when Run ends).
func (m *Master) establishedOf(pid int) int {
	return m.countConns(pid, 1<<unix.BPF_TCP_ESTABLISHED)
}

// heldStates are the TCP states of a connection that has a descriptor:
// all but listening and TIME_WAIT.
const heldStates = 1<<unix.BPF_TCP_ESTABLISHED | 1<<unix.BPF_TCP_SYN_RECV | 1<<unix.BPF_TCP_FIN_WAIT1 |
	1<<unix.BPF_TCP_FIN_WAIT2 | 1<<unix.BPF_TCP_CLOSE_WAIT | 1<<unix.BPF_TCP_LAST_ACK | 1<<unix.BPF_TCP_CLOSING

func (m *Master) countConns(pid int, states uint32) int {
	ports := m.tcpPorts
	inodes := map[uint32]bool{}
	held, _ := procfs.SocketInodes(pid)
	for _, ino := range held {
		inodes[uint32(ino)] = true
	}
	if len(ports) == 0 || len(inodes) == 0 {
		return 0
	}
	n, err := acceptedConns(ports, inodes, states)
	if err != nil {
		m.log.Debug("cannot count the connections of a generation", "pid", pid, "err", err)
		return -1
	}
	return n
}

// acceptedConns counts the TCP connections in states (a mask of
// 1<<BPF_TCP_*) whose local port is in ports
// and whose inode is in inodes: with a sock_diag dump filtered by state,
// for /proc/net/tcp lists every TIME_WAIT connection of the host and
// takes seconds to read on a busy one.
func acceptedConns(ports map[uint16]bool, inodes map[uint32]bool, states uint32) (int, error) {
	n := 0
	err := diagDump(ports, states, func(inode uint32) {
		if inodes[inode] {
			n++
		}
	})
	return n, err
}

// diagDump calls found with the inode of each TCP connection in states
// whose local port is in ports, from one sock_diag dump per address
// family.
func diagDump(ports map[uint16]bool, states uint32, found func(inode uint32)) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return os.NewSyscallError("socket(NETLINK_SOCK_DIAG)", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(sockDiagTimeout.Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 32<<10)
	for _, fam := range []uint8{unix.AF_INET, unix.AF_INET6} {
		req := diagRequest(fam, &net.TCPAddr{}, &net.TCPAddr{})
		ne := binary.NativeEndian
		ne.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
		ne.PutUint32(req[16+4:], states)
		if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return os.NewSyscallError("sendto(sock_diag)", err)
		}
	read:
		for {
			got, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return os.NewSyscallError("recvfrom(sock_diag)", err)
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:got])
			if err != nil {
				return fmt.Errorf("sock_diag: %w", err)
			}
			for _, msg := range msgs {
				switch msg.Header.Type {
				case unix.NLMSG_DONE:
					break read
				case unix.NLMSG_ERROR:
					return errors.New("sock_diag: error in a dump")
				}
				// inet_diag_msg: family, state, timer, retrans, then
				// sockid (sport first, big-endian), ..., inode at 68.
				d := msg.Data
				if len(d) >= 72 && ports[binary.BigEndian.Uint16(d[4:])] {
					found(ne.Uint32(d[68:]))
				}
			}
		}
	}
	return nil
}

// establishedOfEach is establishedOf for several processes at once, with
// one sock_diag dump, which lists every connection on the listeners'
// ports: a status costs one dump, however many generations drain. A pid
// whose count the kernel would not give is -1.
func (m *Master) establishedOfEach(pids []int) map[int]int {
	owner := map[uint32]int{}
	counts := map[int]int{}
	for _, pid := range pids {
		counts[pid] = 0
		held, _ := procfs.SocketInodes(pid)
		for _, ino := range held {
			owner[uint32(ino)] = pid
		}
	}
	if len(m.tcpPorts) == 0 || len(owner) == 0 {
		return counts
	}
	err := diagDump(m.tcpPorts, 1<<unix.BPF_TCP_ESTABLISHED, func(inode uint32) {
		if pid, ok := owner[inode]; ok {
			counts[pid]++
		}
	})
	if err != nil {
		m.log.Debug("cannot count the connections of the generations", "err", err)
		for pid := range counts {
			counts[pid] = -1
		}
	}
	return counts
}

// listenerPorts are the ports of the TCP sockets among socks.
func listenerPorts(socks []*socket) map[uint16]bool {
	ports := map[uint16]bool{}
	for _, s := range socks {
		if _, p, err := net.SplitHostPort(s.tcp); err == nil {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				ports[uint16(n)] = true
			}
		}
	}
	return ports
}
