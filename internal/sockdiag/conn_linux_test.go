package sockdiag

import (
	"errors"
	"net"
	"net/netip"
	"syscall"
	"testing"
)

// inodeOf returns the inode of a socket's descriptor.
func inodeOf(t *testing.T, c syscall.Conn) uint64 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	var serr error
	rc.Control(func(fd uintptr) { serr = syscall.Fstat(int(fd), &st) })
	if serr != nil {
		t.Fatal(serr)
	}
	return st.Ino
}

// The kernel's own answers about real loopback connections: the dump
// finds the server side in its state with its inode, the lookup finds it
// by its addresses, with inode 0 before it is accepted, and says
// ErrNoSocket for addresses nobody has.
func TestTCPAndLookup(t *testing.T) {
	t.Parallel()
	for _, network := range []string{"tcp4", "tcp6"} {
		addr := "127.0.0.1:0"
		if network == "tcp6" {
			addr = "[::1]:0"
		}
		l, err := net.Listen(network, addr)
		if err != nil {
			t.Logf("%s: %v (no IPv6 here?)", network, err)
			continue
		}
		defer l.Close()
		c, err := net.Dial(network, l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		server, client := c.RemoteAddr().(*net.TCPAddr).AddrPort(), c.LocalAddr().(*net.TCPAddr).AddrPort()

		// In the accept queue: the socket exists, nobody holds it.
		s, err := LookupTCP(server, client)
		if err != nil || s.Inode != 0 || s.State != Established {
			t.Errorf("%s: before accept, LookupTCP = %+v, %v; want an established socket with inode 0", network, s, err)
		}
		a, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		ino := inodeOf(t, a.(*net.TCPConn))
		if s, err := LookupTCP(server, client); err != nil || s.Inode != ino || s.Local != server || s.Remote != client {
			t.Errorf("%s: after accept, LookupTCP = %+v, %v; want inode %d", network, s, err, ino)
		}
		socks, err := TCP(Of(Established))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range socks {
			if s.Inode == ino {
				found = s.Local == server && s.Remote == client && s.State == Established
			}
			if s.State != Established {
				t.Errorf("%s: TCP(Established) returned a socket in state %d", network, s.State)
			}
		}
		if !found {
			t.Errorf("%s: TCP(Established) did not return the accepted connection (inode %d) right", network, ino)
		}
		// The listener is not established: not in that dump, but in one of
		// listening sockets.
		lino := inodeOf(t, l.(*net.TCPListener))
		listening, err := TCP(Of(Listen))
		if err != nil {
			t.Fatal(err)
		}
		if !containsInode(listening, lino) || containsInode(socks, lino) {
			t.Errorf("%s: the listener (inode %d) is in the wrong dump", network, lino)
		}
		nobody := netip.AddrPortFrom(server.Addr(), 1)
		if _, err := LookupTCP(nobody, client); !errors.Is(err, ErrNoSocket) {
			t.Errorf("%s: LookupTCP of addresses nobody has: %v; want ErrNoSocket", network, err)
		}
	}
}

func containsInode(socks []TCPSocket, ino uint64) bool {
	for _, s := range socks {
		if s.Inode == ino {
			return true
		}
	}
	return false
}

func TestUnixInodes(t *testing.T) {
	t.Parallel()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fds[0])
	defer syscall.Close(fds[1])
	var st syscall.Stat_t
	if err := syscall.Fstat(fds[0], &st); err != nil {
		t.Fatal(err)
	}
	got, err := UnixInodes()
	if err != nil {
		t.Fatal(err)
	}
	if !got[st.Ino] {
		t.Errorf("UnixInodes does not list a socketpair's end (inode %d) among %d", st.Ino, len(got))
	}
}
