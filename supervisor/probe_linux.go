package supervisor

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/sockdiag"
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
// accepted: the probe asks it again).
const (
	probePause       = 20 * time.Millisecond
	probeDialTimeout = time.Second
	probeIOTimeout   = 2 * time.Second
	acceptWait       = time.Second
	acceptPoll       = 5 * time.Millisecond
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
		// The exact lookup of one socket: no dump of a table that
		// holds every TIME_WAIT connection. Inode 0: still queued.
		sock, err := sockdiag.LookupTCP(server.AddrPort(), client.AddrPort())
		if err != nil {
			return false, err
		}
		if sock.Inode != 0 {
			return holds(pid, sock.Inode), nil
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
	return m.countConns(pid, sockdiag.Held)
}

// establishedOf is connectionsOf for the connections in state ESTABLISHED
// only: those a client may still be using. It reads nothing of the run
// loop's, so any goroutine may call it: m.tcpPorts and m.log do not
// change once New has returned (m.socks does, when Run ends).
func (m *Master) establishedOf(pid int) int {
	return m.countConns(pid, sockdiag.Of(sockdiag.Established))
}

func (m *Master) countConns(pid int, states sockdiag.States) int {
	ports := m.tcpPorts
	inodes := map[uint64]bool{}
	held, _ := procfs.SocketInodes(pid)
	for _, ino := range held {
		inodes[ino] = true
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

// acceptedConns counts the TCP connections in states whose local port is
// in ports
// and whose inode is in inodes: with a sock_diag dump filtered by state,
// for /proc/net/tcp lists every TIME_WAIT connection of the host and
// takes seconds to read on a busy one.
func acceptedConns(ports map[uint16]bool, inodes map[uint64]bool, states sockdiag.States) (int, error) {
	n := 0
	err := diagDump(ports, states, func(inode uint64) {
		if inodes[inode] {
			n++
		}
	})
	return n, err
}

// diagDump calls found with the inode of each TCP connection in states
// whose local port is in ports, from one sock_diag dump.
func diagDump(ports map[uint16]bool, states sockdiag.States, found func(inode uint64)) error {
	socks, err := sockdiag.TCP(states)
	if err != nil {
		return err
	}
	for _, s := range socks {
		if ports[s.Local.Port()] {
			found(s.Inode)
		}
	}
	return nil
}

// establishedOfEach is establishedOf for several processes at once, with
// one sock_diag dump, which lists every connection on the listeners'
// ports: a status costs one dump, however many generations drain. A pid
// whose count the kernel would not give is -1.
func (m *Master) establishedOfEach(pids []int) map[int]int {
	owner := map[uint64]int{}
	counts := map[int]int{}
	for _, pid := range pids {
		counts[pid] = 0
		held, _ := procfs.SocketInodes(pid)
		for _, ino := range held {
			owner[ino] = pid
		}
	}
	if len(m.tcpPorts) == 0 || len(owner) == 0 {
		return counts
	}
	err := diagDump(m.tcpPorts, sockdiag.Of(sockdiag.Established), func(inode uint64) {
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
