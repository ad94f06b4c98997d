package procfs

import (
	"net"
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

func TestEstablishedTCP(t *testing.T) {
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
		s, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		got, err := EstablishedTCP()
		if err != nil {
			t.Fatalf("EstablishedTCP: %v", err)
		}
		for _, k := range []struct {
			name string
			c    syscall.Conn
		}{{"client", c.(syscall.Conn)}, {"server", s.(syscall.Conn)}, {"listener", l.(syscall.Conn)}} {
			ino := inodeOf(t, k.c)
			if want := k.name != "listener"; got[ino] != want {
				t.Errorf("%s %s socket (inode %d) in EstablishedTCP: %v; want %v", network, k.name, ino, got[ino], want)
			}
		}
	}
}

func TestUnixSockets(t *testing.T) {
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
	got, err := UnixSockets()
	if err != nil {
		t.Fatalf("UnixSockets: %v", err)
	}
	if !got[st.Ino] {
		t.Errorf("UnixSockets has %d sockets, not our socketpair's (inode %d)", len(got), st.Ino)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if ino := inodeOf(t, l.(syscall.Conn)); got[ino] {
		t.Errorf("UnixSockets has a TCP listener's inode %d", ino)
	}
}

func TestParseInetDiagRejectsShortInput(t *testing.T) {
	t.Parallel()
	msg := inetDiagRequest(2, 1) // a well-formed netlink message, not a reply
	for _, b := range [][]byte{msg[:10], append([]byte{200, 0, 0, 0}, msg[4:]...)} {
		if _, err := ParseInetDiag(b, map[uint64]bool{}); err == nil {
			t.Errorf("ParseInetDiag(%x) = nil error; want one", b)
		}
	}
}
