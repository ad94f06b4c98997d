//go:build linux || darwin

package baton

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"golang.org/x/sys/unix"
)

var unsetHandoffEnv sync.Once

// newTestUpgrader returns a first-generation Upgrader, stopped when the test
// ends.
func newTestUpgrader(t *testing.T) *Upgrader {
	t.Helper()
	// newUpgrader would take a stray BATON_HANDOFF (go test run from a
	// process baton started) for a handoff from its parent. This process
	// is never a successor: the helpers re-executed from this binary exit
	// in TestMain, long before any test runs.
	unsetHandoffEnv.Do(func() { os.Unsetenv(envHandoff) })
	u, err := newUpgrader(Options{})
	if err != nil {
		t.Fatalf("newUpgrader(Options{}): %v", err)
	}
	if u.Generation() != 1 || u.HasParent() {
		t.Fatalf("newUpgrader(Options{}) without %s: generation %d, has parent %t; want 1, false", envHandoff, u.Generation(), u.HasParent())
	}
	t.Cleanup(u.Stop)
	return u
}

// entries returns a copy of the registry's entries.
func entries(u *Upgrader) []entry {
	u.reg.mu.Lock()
	defer u.reg.mu.Unlock()
	out := make([]entry, len(u.reg.entries))
	for i, e := range u.reg.entries {
		out[i] = *e
	}
	return out
}

// onlyEntry returns the registry's one entry.
func onlyEntry(t *testing.T, u *Upgrader) entry {
	t.Helper()
	es := entries(u)
	if len(es) != 1 {
		t.Fatalf("the registry holds %d entries, want 1: %+v", len(es), es)
	}
	return es[0]
}

// inherit puts a copy of c's descriptor into u's registry as if the
// predecessor had passed it on with meta, and closes c.
func inherit(t *testing.T, u *Upgrader, meta fdMeta, c interface {
	syscall.Conn
	io.Closer
}) *entry {
	t.Helper()
	fd, err := dupConn(c)
	if err != nil {
		t.Fatalf("dupConn(%T): %v", c, err)
	}
	if ul, ok := c.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	c.Close()
	e := &entry{meta: meta, fd: fd}
	u.reg.inherit([]*entry{e})
	return e
}

// checkNonblock fails t unless fd is in non-blocking mode: the open file
// description is shared with every other generation, and a blocking one
// would hang them all in accept(2).
func checkNonblock(t *testing.T, fd int, after string) {
	t.Helper()
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		t.Errorf("after %s: fcntl(%d, F_GETFL): %v", after, fd, err)
	} else if fl&unix.O_NONBLOCK == 0 {
		t.Errorf("after %s: the registry's descriptor %d is in blocking mode (flags %#x), want O_NONBLOCK", after, fd, fl)
	}
}

// checkOpen fails t unless fd is open (open true) or closed.
func checkOpen(t *testing.T, fd int, open bool, what string) {
	t.Helper()
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	switch {
	case open && err != nil:
		t.Errorf("%s: fcntl(%d, F_GETFD): %v; want it open", what, fd, err)
	case !open && !errors.Is(err, unix.EBADF):
		t.Errorf("%s: fcntl(%d, F_GETFD) = %v; want EBADF (closed)", what, fd, err)
	}
}

// checkCloexec fails t unless fd is close-on-exec: a descriptor the
// application did not pass on on purpose must not leak into its children.
func checkCloexec(t *testing.T, fd int, what string) {
	t.Helper()
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	if err != nil || fl&unix.FD_CLOEXEC == 0 {
		t.Errorf("%s: fcntl(%d, F_GETFD) = %#x, %v; want FD_CLOEXEC", what, fd, fl, err)
	}
}

// sysFd returns the descriptor behind c, for comparison only.
func sysFd(t *testing.T, c syscall.Conn) int {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	rc.Control(func(f uintptr) { fd = int(f) })
	return fd
}

// passedFd returns a copy of the descriptor the registry would pass on for
// e, made through SyscallConn (never Fd, which may make the shared open
// file description blocking) and closed when the test ends; -1 if e has
// none. A copy shares the open file description, so its O_NONBLOCK is
// that of every holder of the socket.
func passedFd(t *testing.T, u *Upgrader, e *entry) int {
	t.Helper()
	u.reg.mu.Lock()
	defer u.reg.mu.Unlock()
	nfd := -1
	var err error
	if !e.control(func(fd int) { nfd, err = dupFd(fd) }) {
		return -1
	}
	if err != nil {
		t.Fatalf("copying the descriptor of %s: %v", e.describe(), err)
	}
	t.Cleanup(func() { unix.Close(nfd) })
	return nfd
}

// checkOwnsNone fails t unless the registry keeps no descriptor of its own
// for e, only the application's value(s): one descriptor per socket.
func checkOwnsNone(t *testing.T, e *entry, after string) {
	t.Helper()
	if e.fd != -1 || len(e.conns) == 0 {
		t.Errorf("after %s the registry holds descriptor %d and %d of the application's values; want none of its own (-1) and at least one value", after, e.fd, len(e.conns))
	}
}

// openFds counts this process's open descriptors; -1 where the system
// cannot tell (then the tests skip the check).
func openFds() int {
	if runtime.GOOS != "linux" {
		return -1
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// checkAccepts dials l's address and accepts on l.
func checkAccepts(t *testing.T, l net.Listener) {
	t.Helper()
	c, err := net.DialTimeout(l.Addr().Network(), l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s %s: %v", l.Addr().Network(), l.Addr(), err)
	}
	defer c.Close()
	setDeadline(l)
	a, err := l.Accept()
	if err != nil {
		t.Fatalf("accept on %s %s: %v", l.Addr().Network(), l.Addr(), err)
	}
	a.Close()
}

func setDeadline(l net.Listener) {
	if d, ok := l.(interface{ SetDeadline(time.Time) error }); ok {
		d.SetDeadline(time.Now().Add(5 * time.Second))
	}
}

// checkEcho sends a datagram to c from a new socket and reads it on c.
func checkEcho(t *testing.T, c net.PacketConn) {
	t.Helper()
	network := c.LocalAddr().Network()
	var from net.PacketConn
	var err error
	switch a, _ := c.LocalAddr().(*net.UDPAddr); {
	case a == nil:
		from, err = net.ListenPacket(network, filepath.Join(t.TempDir(), "from.sock"))
	case a.IP.To4() == nil:
		from, err = net.ListenPacket("udp6", "[::1]:0")
	default:
		from, err = net.ListenPacket("udp4", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatalf("ListenPacket %s: %v", network, err)
	}
	defer from.Close()
	if _, err := from.WriteTo([]byte("ping"), c.LocalAddr()); err != nil {
		t.Fatalf("send to %s %s: %v", network, c.LocalAddr(), err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, 16)
	n, _, err := c.ReadFrom(b)
	if err != nil || string(b[:n]) != "ping" {
		t.Fatalf("read on %s %s = %q, %v; want ping", network, c.LocalAddr(), b[:n], err)
	}
}

func haveIPv6Loopback() bool {
	l, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		return false
	}
	l.Close()
	return true
}

func TestListen(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		network, addr string
	}{
		{"tcp", "127.0.0.1:0"},
		{"tcp", "localhost:0"},
		{"tcp4", "127.0.0.1:0"},
		{"tcp6", "[::1]:0"},
		{"unix", filepath.Join(dir, "stream.sock")},
		{"unixpacket", filepath.Join(dir, "seqpacket.sock")},
	}
	for _, tc := range cases {
		t.Run(tc.network+" "+tc.addr, func(t *testing.T) {
			t.Parallel()
			if tc.network == "tcp6" && !haveIPv6Loopback() {
				t.Skip("skipped: no IPv6 loopback (::1) on this machine")
			}
			if tc.network == "unixpacket" && runtime.GOOS != "linux" {
				t.Skipf("skipped: no unixpacket sockets on %s", runtime.GOOS)
			}
			u := newTestUpgrader(t)
			l, err := u.Listen(tc.network, tc.addr)
			if err != nil {
				t.Fatalf("Listen(%q, %q): %v", tc.network, tc.addr, err)
			}
			e := onlyEntry(t, u)
			want := fdMeta{Kind: kindListener, Network: tc.network, Address: tc.addr, Actual: l.Addr().String()}
			if e.meta != want || e.inherited || e.claimed {
				t.Errorf("after Listen(%q, %q) the registry holds %+v (inherited %t, claimed %t); want %+v, neither", tc.network, tc.addr, e.meta, e.inherited, e.claimed, want)
			}
			// One descriptor per socket: the registry passes on the
			// listener's own.
			checkOwnsNone(t, &e, "Listen")
			fd := passedFd(t, u, &e)
			if fd < 0 || !sameFile(t, fd, sysFd(t, l.(syscall.Conn))) {
				t.Errorf("the registry would pass on descriptor %d, not the listener's socket", fd)
			}
			checkNonblock(t, fd, "Listen")
			checkAccepts(t, l)

			// Closing the application's listener closes the socket (the
			// registry has no copy): it is not passed on any more. A unix
			// socket's file stays until the final Stop.
			l.Close()
			if s := u.reg.snapshot(); s.len() != 0 {
				t.Errorf("after the listener was closed an upgrade would pass on %+v; want nothing", s.metas)
			}
			if strings.HasPrefix(tc.network, "unix") {
				if _, err := os.Stat(tc.addr); err != nil {
					t.Errorf("socket file after closing the %s listener: %v; want it kept until the final Stop", tc.network, err)
				}
			}
		})
	}
}

func TestListenPacket(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cases := []struct {
		network, addr string
	}{
		{"udp", "127.0.0.1:0"},
		{"udp4", "127.0.0.1:0"},
		{"udp6", "[::1]:0"},
		{"unixgram", filepath.Join(dir, "dgram.sock")},
	}
	for _, tc := range cases {
		t.Run(tc.network, func(t *testing.T) {
			t.Parallel()
			if tc.network == "udp6" && !haveIPv6Loopback() {
				t.Skip("skipped: no IPv6 loopback (::1) on this machine")
			}
			u := newTestUpgrader(t)
			c, err := u.ListenPacket(tc.network, tc.addr)
			if err != nil {
				t.Fatalf("ListenPacket(%q, %q): %v", tc.network, tc.addr, err)
			}
			defer c.Close()
			e := onlyEntry(t, u)
			want := fdMeta{Kind: kindPacket, Network: tc.network, Address: tc.addr, Actual: c.LocalAddr().String()}
			if e.meta != want || e.inherited {
				t.Errorf("after ListenPacket(%q, %q) the registry holds %+v; want %+v", tc.network, tc.addr, e.meta, want)
			}
			checkOwnsNone(t, &e, "ListenPacket")
			checkNonblock(t, passedFd(t, u, &e), "ListenPacket")
			checkEcho(t, c)
		})
	}
}

func TestListenUnknownNetwork(t *testing.T) {
	t.Parallel()
	u := newTestUpgrader(t)
	for _, network := range []string{"udp", "unixgram", "ip4:icmp", "", "TCP"} {
		l, err := u.Listen(network, "127.0.0.1:0")
		var oe *net.OpError
		if err == nil || !errors.As(err, &oe) || !strings.Contains(err.Error(), "unknown network "+network) {
			t.Errorf("Listen(%q, ...) = %v, %v; want a *net.OpError saying unknown network %s", network, l, err, network)
		}
	}
	for _, network := range []string{"tcp", "unix", "unixpacket", "ip6", "UDP"} {
		c, err := u.ListenPacket(network, "127.0.0.1:0")
		var oe *net.OpError
		if err == nil || !errors.As(err, &oe) || !strings.Contains(err.Error(), "unknown network "+network) {
			t.Errorf("ListenPacket(%q, ...) = %v, %v; want a *net.OpError saying unknown network %s", network, c, err, network)
		}
	}
	if es := entries(u); len(es) != 0 {
		t.Errorf("refused networks left %d registry entries: %+v", len(es), es)
	}
}

// Add keeps its own copy of a file or connection, passes on a listener or
// packet socket as the caller holds it, and the lookups hand out new
// values of the right kind.
func TestAddAndLookup(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	u := newTestUpgrader(t)

	f, err := os.Create(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("payload")
	tcpL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unixL, err := net.Listen("unix", filepath.Join(dir, "l.sock"))
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpC, tcpPeer := tcpPair(t)

	adds := []struct {
		name string
		c    syscall.Conn
		want fdMeta
	}{
		{"file", f, fdMeta{Name: "file", Kind: kindFile}},
		{"tcp-listener", tcpL.(syscall.Conn), fdMeta{Name: "tcp-listener", Kind: kindListener, Network: "tcp", Actual: tcpL.Addr().String()}},
		{"unix-listener", unixL.(syscall.Conn), fdMeta{Name: "unix-listener", Kind: kindListener, Network: "unix", Actual: unixL.Addr().String()}},
		{"udp", udp.(syscall.Conn), fdMeta{Name: "udp", Kind: kindPacket, Network: "udp", Actual: udp.LocalAddr().String()}},
		{"tcp-conn", tcpC.(syscall.Conn), fdMeta{Name: "tcp-conn", Kind: kindConn, Network: "tcp", Actual: tcpC.LocalAddr().String()}},
	}
	for _, a := range adds {
		if err := u.Add(a.name, a.c); err != nil {
			t.Fatalf("Add(%q, %T): %v", a.name, a.c, err)
		}
	}
	// A file or connection stays the caller's: close them. The sockets
	// are passed on as the caller holds them, and closed at the end.
	for _, a := range adds {
		if a.want.Kind == kindFile || a.want.Kind == kindConn {
			a.c.(io.Closer).Close()
		} else {
			defer a.c.(io.Closer).Close()
		}
	}
	es := entries(u)
	if len(es) != len(adds) {
		t.Fatalf("%d Adds left %d registry entries", len(adds), len(es))
	}
	for i, a := range adds {
		if es[i].meta != a.want || es[i].inherited {
			t.Errorf("Add(%q, %T) registered %+v (inherited %t); want %+v", a.name, a.c, es[i].meta, es[i].inherited, a.want)
		}
		if a.want.Kind == kindFile || a.want.Kind == kindConn {
			checkOpen(t, es[i].fd, true, "the registry's copy of "+a.name+" after the caller closed theirs")
			checkCloexec(t, es[i].fd, "the registry's copy of "+a.name)
			continue
		}
		checkOwnsNone(t, &es[i], "Add("+a.name+")")
		if fd := passedFd(t, u, &es[i]); fd < 0 || !sameFile(t, fd, sysFd(t, a.c)) {
			t.Errorf("Add(%q): the registry would pass on descriptor %d, not the caller's socket", a.name, fd)
		}
	}
	// Closing the caller's unix listener must not remove the socket file,
	// which belongs to every generation.
	defer func() {
		unixL.Close()
		if _, err := os.Stat(unixL.Addr().String()); err != nil {
			t.Errorf("socket file after the caller closed the unix listener it gave Add: %v; want it kept (unlink-on-close off)", err)
		}
	}()

	t.Run("File", func(t *testing.T) {
		for _, a := range adds { // File takes any kind.
			g, err := u.File(a.name)
			if err != nil {
				t.Errorf("File(%q): %v", a.name, err)
				continue
			}
			checkCloexec(t, sysFd(t, g), "File("+a.name+")")
			g.Close()
		}
		g, err := u.File("file")
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		b := make([]byte, 16)
		if n, err := g.ReadAt(b, 0); string(b[:n]) != "payload" {
			t.Errorf(`File("file") reads %q, %v; want "payload"`, b[:n], err)
		}
	})
	t.Run("Listener", func(t *testing.T) {
		for _, name := range []string{"tcp-listener", "unix-listener"} {
			l, err := u.Listener(name)
			if err != nil {
				t.Fatalf("Listener(%q): %v", name, err)
			}
			checkAccepts(t, l)
			l.Close()
		}
		if _, err := os.Stat(filepath.Join(dir, "l.sock")); err != nil {
			t.Errorf("socket file after closing the unix listener from Listener: %v; want it kept", err)
		}
	})
	t.Run("PacketConn", func(t *testing.T) {
		c, err := u.PacketConn("udp")
		if err != nil {
			t.Fatalf(`PacketConn("udp"): %v`, err)
		}
		defer c.Close()
		checkEcho(t, c)
	})
	t.Run("Conn", func(t *testing.T) {
		c, err := u.Conn("tcp-conn")
		if err != nil {
			t.Fatalf(`Conn("tcp-conn"): %v`, err)
		}
		defer c.Close()
		checkConnected(t, c, tcpPeer)
	})
	t.Run("wrong kind", func(t *testing.T) {
		checks := []struct {
			call string
			err  error
			want string
		}{
			{`Listener("udp")`, errOf(u.Listener("udp")), `baton: "udp" is a packet, not a listener`},
			{`Listener("file")`, errOf(u.Listener("file")), `baton: "file" is a file, not a listener`},
			{`PacketConn("tcp-listener")`, errOf(u.PacketConn("tcp-listener")), `baton: "tcp-listener" is a listener, not a packet`},
			{`Conn("udp")`, errOf(u.Conn("udp")), `baton: "udp" is a packet, not a conn`},
			{`Conn("file")`, errOf(u.Conn("file")), `baton: "file" is a file, not a conn`},
		}
		for _, c := range checks {
			if c.err == nil || c.err.Error() != c.want {
				t.Errorf("%s = %v; want %q", c.call, c.err, c.want)
			}
		}
	})
	t.Run("no such name", func(t *testing.T) {
		for call, err := range map[string]error{
			`File("nope")`:       errOf(u.File("nope")),
			`Listener("nope")`:   errOf(u.Listener("nope")),
			`PacketConn("nope")`: errOf(u.PacketConn("nope")),
			`Conn("nope")`:       errOf(u.Conn("nope")),
		} {
			if !errors.Is(err, ErrNoSuchName) || !strings.Contains(err.Error(), `"nope"`) {
				t.Errorf("%s = %v; want ErrNoSuchName naming %q", call, err, "nope")
			}
		}
	})
	// A Listen socket has no name: lookups by its address find nothing.
	l, err := u.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if _, err := u.Listener(l.Addr().String()); !errors.Is(err, ErrNoSuchName) {
		t.Errorf("Listener(%q) of a Listen socket: %v; want ErrNoSuchName", l.Addr(), err)
	}
}

func errOf[T any](_ T, err error) error { return err }

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	setDeadline(l)
	p, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); p.Close() })
	return c, p
}

// checkConnected writes on c and reads it on peer.
func checkConnected(t *testing.T, c, peer net.Conn) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	peer.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatalf("write on the %s conn: %v", c.LocalAddr().Network(), err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(peer, b); err != nil || string(b) != "hi" {
		t.Fatalf("peer of the %s conn read %q, %v; want hi", c.LocalAddr().Network(), b, err)
	}
}

// Connections of every network a net.Conn can be on are passed on as
// conns, whatever other methods their Go type has.
func TestAddConn(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	tcpC, tcpPeer := tcpPair(t)
	ul, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer ul.Close()
	unixC, err := net.DialTimeout("unix", ul.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer unixC.Close()
	setDeadline(ul)
	unixPeer, err := ul.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer unixPeer.Close()
	pairC, pairRemote, err := socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer pairC.Close()
	pc, err := net.FileConn(pairRemote)
	pairRemote.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()

	// *net.UnixConn has ReadFrom and WriteTo, so it is a net.PacketConn
	// too; a stream unix connection must still be a conn.
	for _, tc := range []struct {
		name    string
		c, peer net.Conn
	}{
		{"tcp", tcpC, tcpPeer},
		{"unix dialed", unixC, unixPeer},
		{"unix accepted", unixPeer, unixC},
		{"unix socketpair", pairC, pc},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := newTestUpgrader(t)
			if err := u.Add("c", tc.c.(syscall.Conn)); err != nil {
				t.Fatalf("Add(%q, %T on %s): %v", "c", tc.c, tc.c.LocalAddr().Network(), err)
			}
			if e := onlyEntry(t, u); e.meta.Kind != kindConn || e.meta.Network != tc.c.LocalAddr().Network() {
				t.Errorf("Add of a %s connection registered %+v; want a conn on %s", tc.c.LocalAddr().Network(), e.meta, tc.c.LocalAddr().Network())
			}
			c, err := u.Conn("c")
			if err != nil {
				t.Fatalf(`Conn("c"): %v`, err)
			}
			defer c.Close()
			checkConnected(t, c, tc.peer)
		})
	}
}

func TestAddErrors(t *testing.T) {
	t.Parallel()
	u := newTestUpgrader(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, name := range []string{"", strings.Repeat("n", maxNameLen+1), "a:b", "nul\x00", ":"} {
		if err := u.Add(name, f); err == nil || !strings.Contains(err.Error(), "baton: bad descriptor name") {
			t.Errorf("Add(%.20q, file) = %v; want a bad descriptor name error", name, err)
		}
	}
	if err := u.Add(strings.Repeat("n", maxNameLen), f); err != nil {
		t.Errorf("Add of a name of %d bytes: %v", maxNameLen, err)
	}

	type onlySyscallConn struct{ syscall.Conn }
	if err := u.Add("wrapped", onlySyscallConn{f}); err == nil || !strings.Contains(err.Error(), `baton: Add "wrapped": unsupported type`) {
		t.Errorf("Add of a %T: %v; want it refused as an unsupported type", onlySyscallConn{}, err)
	}
	if got := len(entries(u)); got != 1 {
		t.Errorf("refused Adds left %d entries, want 1", got)
	}
}

// A refused duplicate leaves the first registration alone and no
// descriptor behind.
func TestAddDuplicateName(t *testing.T) {
	// Not parallel: it counts the process's descriptors.
	u := newTestUpgrader(t)
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := u.Add("dup", f); err != nil {
		t.Fatal(err)
	}
	first := onlyEntry(t, u)
	l := tcpListener(t)
	before := openFds()
	for _, c := range []syscall.Conn{f, l} {
		if err := u.Add("dup", c); err == nil || err.Error() != `baton: a descriptor named "dup" is already registered` {
			t.Errorf("second Add(%q, %T) = %v; want it refused as already registered", "dup", c, err)
		}
	}
	if after := openFds(); after != before {
		t.Errorf("%d descriptors open before the refused Adds, %d after; want the copies they made closed", before, after)
	}
	if e := onlyEntry(t, u); e.fd != first.fd || e.meta != first.meta {
		t.Errorf("after the refused duplicates the registry holds %+v, want the first %+v", e, first)
	}
}

// tcpListener returns a loopback listener closed when the test ends.
func tcpListener(t *testing.T) *net.TCPListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l.(*net.TCPListener)
}

// A successor finds an inherited listener by the address it asked for or by
// the address the socket is bound to, once; a second Listen makes a new
// socket.
func TestListenInherited(t *testing.T) {
	t.Parallel()
	u := newTestUpgrader(t)
	l1, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l2, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	actual1, actual2 := l1.Addr().String(), l2.Addr().String()
	e1 := inherit(t, u, fdMeta{Kind: kindListener, Network: "tcp", Address: "127.0.0.1:0", Actual: actual1}, l1.(*net.TCPListener))
	e2 := inherit(t, u, fdMeta{Kind: kindListener, Network: "tcp", Address: "127.0.0.1:0", Actual: actual2}, l2.(*net.TCPListener))

	// The asked-for address finds the first such socket.
	got1, err := u.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("Listen(tcp, 127.0.0.1:0) with two inherited: %v", err)
	}
	defer got1.Close()
	if got1.Addr().String() != actual1 || !e1.claimed {
		t.Errorf("Listen(tcp, 127.0.0.1:0) = a listener on %s (inherited one claimed: %t); want the inherited %s", got1.Addr(), e1.claimed, actual1)
	}
	checkOwnsNone(t, e1, "Listen of an inherited socket")
	checkNonblock(t, passedFd(t, u, e1), "Listen of an inherited socket")
	checkAccepts(t, got1)

	// The actual address finds the second, a program that saved its port.
	got2, err := u.Listen("tcp", actual2)
	if err != nil {
		t.Fatalf("Listen(tcp, %s), its actual address: %v", actual2, err)
	}
	defer got2.Close()
	if got2.Addr().String() != actual2 || !e2.claimed {
		t.Errorf("Listen(tcp, %s) = a listener on %s (claimed: %t); want the inherited socket", actual2, got2.Addr(), e2.claimed)
	}
	checkOwnsNone(t, e2, "Listen of an inherited socket by its actual address")
	checkNonblock(t, passedFd(t, u, e2), "Listen of an inherited socket by its actual address")
	checkAccepts(t, got2)
	if n := len(entries(u)); n != 2 {
		t.Errorf("claiming two inherited sockets left %d registry entries, want 2", n)
	}

	// Claimed once: the same request again makes a new socket on a new port,
	if got3, err := u.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Errorf("third Listen(tcp, 127.0.0.1:0): %v", err)
	} else {
		if a := got3.Addr().String(); a == actual1 || a == actual2 {
			t.Errorf("third Listen(tcp, 127.0.0.1:0) returned the claimed socket on %s again", a)
		}
		got3.Close()
	}
	// and a fixed port, still held by the inherited socket, is in use.
	if got4, err := u.Listen("tcp", actual1); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("second Listen(tcp, %s) = %v, %v; want EADDRINUSE", actual1, got4, err)
	}
	if n := len(entries(u)); n != 3 {
		t.Errorf("after one new socket the registry holds %d entries, want 3", n)
	}

	// Closing the claimed listener closes the socket: the registry kept
	// no copy, and it is no longer passed on.
	got1.Close()
	for _, m := range u.reg.snapshot().metas {
		if m.Actual == actual1 {
			t.Errorf("after the claimed listener on %s was closed, an upgrade would still pass it on", actual1)
		}
	}
}

// Inherited sockets are matched on kind and network too, and named ones
// only by name.
func TestListenInheritedMatching(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	u := newTestUpgrader(t)

	udp, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	udpAddr := udp.LocalAddr().String()
	eUDP := inherit(t, u, fdMeta{Kind: kindPacket, Network: "udp", Address: udpAddr, Actual: udpAddr}, udp.(*net.UDPConn))

	tcp, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpAddr := tcp.Addr().String()
	eNamed := inherit(t, u, fdMeta{Name: "admin", Kind: kindListener, Network: "tcp4", Actual: tcpAddr}, tcp.(*net.TCPListener))

	sock := filepath.Join(dir, "s.sock")
	ul, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	eUnix := inherit(t, u, fdMeta{Kind: kindListener, Network: "unix", Address: sock, Actual: sock}, ul.(*net.UnixListener))

	gram := filepath.Join(dir, "g.sock")
	gc, err := net.ListenPacket("unixgram", gram)
	if err != nil {
		t.Fatal(err)
	}
	eGram := inherit(t, u, fdMeta{Kind: kindPacket, Network: "unixgram", Address: gram, Actual: gram}, gc.(*net.UnixConn))

	// A named socket is not found by address, and tcp is not tcp4.
	if l, err := u.Listen("tcp4", tcpAddr); !errors.Is(err, syscall.EADDRINUSE) || eNamed.claimed {
		t.Errorf("Listen(tcp4, %s) of a socket passed on by name = %v, %v (claimed %t); want a new socket, failing with EADDRINUSE", tcpAddr, l, err, eNamed.claimed)
	}
	// A packet socket is not a listener. (The TCP port of the same number
	// may be taken by someone else: then the new socket fails to bind.)
	if l, err := u.Listen("tcp", udpAddr); err == nil {
		l.Close()
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Listen(tcp, %s) with a udp socket inherited there: %v; want a new tcp socket", udpAddr, err)
	}
	if eUDP.claimed {
		t.Errorf("Listen(tcp, ...) claimed the inherited udp socket")
	}

	c, err := u.ListenPacket("udp", udpAddr)
	if err != nil || c.LocalAddr().String() != udpAddr || !eUDP.claimed {
		t.Fatalf("ListenPacket(udp, %s) = %v, %v (claimed %t); want the inherited socket", udpAddr, c, err, eUDP.claimed)
	}
	checkOwnsNone(t, eUDP, "ListenPacket of an inherited socket")
	checkNonblock(t, passedFd(t, u, eUDP), "ListenPacket of an inherited socket")
	checkEcho(t, c)
	c.Close()

	l, err := u.Listen("unix", sock)
	if err != nil || !eUnix.claimed {
		t.Fatalf("Listen(unix, %s) = %v, %v (claimed %t); want the inherited socket", sock, l, err, eUnix.claimed)
	}
	checkOwnsNone(t, eUnix, "Listen of an inherited unix socket")
	checkNonblock(t, passedFd(t, u, eUnix), "Listen of an inherited unix socket")
	checkAccepts(t, l)
	l.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("inherited socket file after closing its listener: %v; want it kept", err)
	}

	g, err := u.ListenPacket("unixgram", gram)
	if err != nil || !eGram.claimed {
		t.Fatalf("ListenPacket(unixgram, %s) = %v, %v (claimed %t); want the inherited socket", gram, g, err, eGram.claimed)
	}
	checkOwnsNone(t, eGram, "ListenPacket of an inherited unixgram socket")
	checkNonblock(t, passedFd(t, u, eGram), "ListenPacket of an inherited unixgram socket")
	checkEcho(t, g)
	g.Close()

	named, err := u.Listener("admin")
	if err != nil || named.Addr().String() != tcpAddr {
		t.Fatalf("Listener(admin) = %v, %v; want the inherited socket on %s", named, err, tcpAddr)
	}
	checkOwnsNone(t, eNamed, "Listener of an inherited socket")
	checkNonblock(t, passedFd(t, u, eNamed), "Listener of an inherited socket")
	checkAccepts(t, named)
	named.Close()
}

// Every way of turning the registry's descriptor into a Go value leaves
// the shared open file description non-blocking.
func TestLookupsKeepSocketsNonblocking(t *testing.T) {
	t.Parallel()
	u := newTestUpgrader(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	eL := inherit(t, u, fdMeta{Name: "l", Kind: kindListener, Network: "tcp", Actual: l.Addr().String()}, l.(*net.TCPListener))
	p, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	eP := inherit(t, u, fdMeta{Name: "p", Kind: kindPacket, Network: "udp", Actual: p.LocalAddr().String()}, p.(*net.UDPConn))
	c, peer := tcpPair(t)
	eC := inherit(t, u, fdMeta{Name: "c", Kind: kindConn, Network: "tcp", Actual: c.LocalAddr().String()}, c.(*net.TCPConn))

	for _, e := range []*entry{eL, eP, eC} {
		checkNonblock(t, e.fd, "inheriting "+e.meta.Name)
	}
	// The listener and the packet socket hold their sockets from now on
	// (the registry closed its copies): they stay open until the end.
	ln, err := u.Listener("l")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	checkNonblock(t, passedFd(t, u, eL), "Listener")
	pc, err := u.PacketConn("p")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	checkNonblock(t, passedFd(t, u, eP), "PacketConn")
	conn, err := u.Conn("c")
	if err != nil {
		t.Fatal(err)
	}
	checkNonblock(t, eC.fd, "Conn")
	checkConnected(t, conn, peer)
	conn.Close()
	for _, e := range []*entry{eL, eP, eC} {
		f, err := u.File(e.meta.Name)
		if err != nil {
			t.Fatalf("File(%q): %v", e.meta.Name, err)
		}
		checkNonblock(t, passedFd(t, u, e), "File("+e.meta.Name+")")
		// Fd switches a descriptor that os.NewFile made non-blocking back
		// to blocking mode; one that already was must stay as it is.
		f.Fd()
		checkNonblock(t, passedFd(t, u, e), "(*os.File).Fd of File("+e.meta.Name+")")
		f.Close()
		if passedFd(t, u, e) < 0 {
			t.Errorf("after closing File(%q) the registry has nothing to pass on; want the socket kept", e.meta.Name)
		}
	}
}

// Ready closes the inherited descriptors this generation did not ask for,
// and keeps the others.
func TestReadyClosesUnclaimed(t *testing.T) {
	// Not parallel: it checks that descriptor numbers are closed, and a
	// parallel test could reuse them in between.
	u := newTestUpgrader(t)
	var es []*entry
	for _, m := range []fdMeta{
		{Kind: kindListener, Network: "tcp", Address: "127.0.0.1:0"}, // claimed by Listen
		{Kind: kindListener, Network: "tcp", Address: "127.0.0.1:0"}, // unclaimed
		{Name: "keep", Kind: kindListener, Network: "tcp"},           // claimed by name
		{Name: "drop", Kind: kindListener, Network: "tcp"},           // unclaimed
	} {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m.Actual = l.Addr().String()
		es = append(es, inherit(t, u, m, l.(*net.TCPListener)))
	}
	if err := u.Add("mine", tcpListener(t)); err != nil {
		t.Fatal(err)
	}
	mine := entries(u)[len(es)]
	l, err := u.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	kept, err := u.Listener("keep")
	if err != nil {
		t.Fatal(err)
	}
	defer kept.Close()

	if err := u.Upgrade(); err != ErrNotReady {
		t.Errorf("Upgrade before Ready = %v, want ErrNotReady", err)
	}
	unclaimed1, unclaimed3 := es[1].fd, es[3].fd
	if err := u.Ready(); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	// The claimed sockets are held by the listeners made of them.
	checkOwnsNone(t, es[0], "Listen of an inherited socket, and Ready")
	checkOpen(t, unclaimed1, false, "inherited socket nobody asked for, after Ready")
	checkOwnsNone(t, es[2], "Listener of an inherited socket, and Ready")
	checkOpen(t, unclaimed3, false, "inherited named socket nobody asked for, after Ready")
	checkOwnsNone(t, &mine, "Add of a listener, and Ready")
	var left []fdMeta
	for _, e := range entries(u) {
		left = append(left, e.meta)
	}
	if len(left) != 3 || left[0] != es[0].meta || left[1] != es[2].meta || left[2] != mine.meta {
		t.Errorf("after Ready the registry holds %+v; want the two claimed inherited sockets and the Add'ed one", left)
	}
	// The kept sockets still serve.
	checkAccepts(t, l)
	checkAccepts(t, kept)

	// Once is enough: a second Ready does nothing.
	if err := u.Ready(); err != nil {
		t.Errorf("second Ready: %v", err)
	}
	if n := len(entries(u)); n != 3 {
		t.Errorf("second Ready left %d entries, want 3", n)
	}
}

// A successor stopped before Ready removes the socket files it created, but
// not the inherited ones: its predecessor still serves them.
func TestStopBeforeReadyKeepsInheritedFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	u := newTestUpgrader(t)
	inheritedSock := filepath.Join(dir, "inherited.sock")
	l, err := net.Listen("unix", inheritedSock)
	if err != nil {
		t.Fatal(err)
	}
	inherit(t, u, fdMeta{Kind: kindListener, Network: "unix", Address: inheritedSock, Actual: inheritedSock}, l.(*net.UnixListener))
	if l, err := u.Listen("unix", inheritedSock); err != nil {
		t.Fatal(err)
	} else {
		l.Close()
	}
	ownSock := filepath.Join(dir, "own.sock")
	if l, err := u.Listen("unix", ownSock); err != nil {
		t.Fatal(err)
	} else {
		l.Close()
	}
	u.Stop()
	if _, err := os.Stat(inheritedSock); err != nil {
		t.Errorf("inherited socket file after Stop before Ready: %v; want it left to the predecessor", err)
	}
	if _, err := os.Stat(ownSock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file this generation created, after Stop before Ready: %v; want it removed", err)
	}
}

// The final Stop removes the socket files and closes what the registry
// holds; after it, nothing can be registered or upgraded.
func TestStopFinal(t *testing.T) {
	// Not parallel: it checks that descriptor numbers are closed.
	dir := t.TempDir()
	u := newTestUpgrader(t)
	var files []string
	listen := func(network, addr string) {
		t.Helper()
		l, err := u.Listen(network, addr)
		if err != nil {
			t.Fatalf("Listen(%q, %q): %v", network, addr, err)
		}
		l.Close()
	}
	listen("tcp", "127.0.0.1:0")
	for _, network := range []string{"unix", "unixpacket"} {
		if network == "unixpacket" && runtime.GOOS != "linux" {
			continue
		}
		p := filepath.Join(dir, network+".sock")
		listen(network, p)
		files = append(files, p)
	}
	gram := filepath.Join(dir, "unixgram.sock")
	c, err := u.ListenPacket("unixgram", gram)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	files = append(files, gram)
	// A unix listener added by name is a socket file of the service too.
	added := filepath.Join(dir, "added.sock")
	al, err := net.Listen("unix", added)
	if err != nil {
		t.Fatal(err)
	}
	al.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := u.Add("added", al.(*net.UnixListener)); err != nil {
		t.Fatal(err)
	}
	al.Close()
	files = append(files, added)
	// A file that merely sits beside them is not a socket: it stays.
	data := filepath.Join(dir, "data")
	f, err := os.Create(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Add("data", f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := u.Ready(); err != nil {
		t.Fatal(err)
	}
	es := entries(u)
	for _, p := range files {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("before Stop: %v", err)
		}
	}

	u.Stop()
	for _, p := range files {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket file %s after the final Stop: %v; want it removed", filepath.Base(p), err)
		}
	}
	if _, err := os.Stat(data); err != nil {
		t.Errorf("plain file passed on by name, after Stop: %v; want it left alone", err)
	}
	for _, e := range es {
		checkOpen(t, e.fd, false, "registry descriptor of "+e.meta.Network+" "+e.meta.Actual+" after Stop")
	}
	select {
	case <-u.Exit():
	default:
		t.Errorf("Exit not closed after Stop")
	}

	checkStopped(t, u)
	u.Stop() // again: nothing happens
}

// checkStopped checks that a stopped Upgrader refuses everything.
func checkStopped(t *testing.T, u *Upgrader) {
	t.Helper()
	for call, err := range map[string]error{
		"Listen":       errOf(u.Listen("tcp", "127.0.0.1:0")),
		"ListenPacket": errOf(u.ListenPacket("udp", "127.0.0.1:0")),
		"Add":          u.Add("late", tcpListener(t)),
		"Upgrade":      u.Upgrade(),
		"Ready":        u.Ready(),
	} {
		if err != ErrStopped {
			t.Errorf("%s after Stop = %v, want ErrStopped", call, err)
		}
	}
	if _, err := u.File("data"); !errors.Is(err, ErrNoSuchName) {
		t.Errorf("File after Stop = %v, want ErrNoSuchName", err)
	}
	if n := len(entries(u)); n != 0 {
		t.Errorf("after Stop the registry holds %d entries, want none", n)
	}
}

// socketPair returns both ends of a handoff socketpair as *net.UnixConn.
func socketPair(t *testing.T) (*net.UnixConn, *net.UnixConn) {
	t.Helper()
	a, remote, err := socketpair()
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	c, err := net.FileConn(remote)
	remote.Close()
	if err != nil {
		t.Fatalf("net.FileConn(the successor's end): %v", err)
	}
	b := c.(*net.UnixConn)
	t.Cleanup(func() { a.Close(); b.Close() })
	deadline := time.Now().Add(10 * time.Second)
	a.SetDeadline(deadline)
	b.SetDeadline(deadline)
	return a, b
}

// sameFile reports whether fds a and b refer to the same file.
func sameFile(t *testing.T, a, b int) bool {
	t.Helper()
	var sa, sb unix.Stat_t
	if err := unix.Fstat(a, &sa); err != nil {
		t.Fatalf("fstat(%d): %v", a, err)
	}
	if err := unix.Fstat(b, &sb); err != nil {
		t.Fatalf("fstat(%d): %v", b, err)
	}
	return sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// sendAsync runs sendFrame in a goroutine (a large frame does not fit in
// the socket buffer) and returns its result.
func sendAsync(c *net.UnixConn, frame []byte, fds []int) <-chan error {
	done := make(chan error, 1)
	go func() { done <- sendFrame(c, frame, fds) }()
	return done
}

func waitSent(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sendFrame: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("sendFrame still blocked after 10s")
	}
}

func TestFrameDescriptors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		nfds    int
		address int // bytes of each descriptor's address
	}{
		{"no descriptors", 0, 0},
		{"one", 1, 10},
		{"the most in one frame", maxFdsPerFrame, 10},
		// Far more than one sendmsg takes: the rest of the frame follows
		// without ancillary data.
		{"large body", maxFdsPerFrame, maxAddressLen},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f, err := os.Create(filepath.Join(t.TempDir(), "passed"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fd := int(f.Fd())
			a, b := socketPair(t)
			metas := make([]fdMeta, tc.nfds)
			for i := range metas {
				metas[i] = fdMeta{Name: "f" + strconv.Itoa(i), Kind: kindFile, Address: strings.Repeat("a", tc.address)}
			}
			var frame []byte
			if tc.nfds == 0 {
				// encodeFds refuses a frame of no descriptors; the
				// transport must still carry one.
				frame = mustFrame(t, frameFds, []byte(fdsBody(0)), nil)
			} else {
				frame = fdsFrame(t, metas)
			}
			sent := sendAsync(a, frame, slices.Repeat([]int{fd}, tc.nfds))
			typ, body, fds, err := recvFrame(b)
			if err != nil {
				t.Fatalf("recvFrame: %v", err)
			}
			waitSent(t, sent)
			defer closeFds(fds)
			if typ != frameFds || !bytes.Equal(body, frame[frameHeaderLen:]) {
				t.Errorf("recvFrame = %q frame of %d bytes; want the F frame of %d bytes sent", typ, len(body), len(frame)-frameHeaderLen)
			}
			if len(fds) != tc.nfds {
				t.Fatalf("recvFrame returned %d descriptors, want %d", len(fds), tc.nfds)
			}
			if _, err := parseFds(body, len(fds)); len(fds) > 0 && err != nil {
				t.Errorf("parseFds of the received frame: %v", err)
			}
			for _, got := range fds {
				checkCloexec(t, got, "received descriptor")
				if !sameFile(t, got, fd) {
					t.Errorf("received descriptor %d is not the file sent", got)
				}
			}
		})
	}
}

// Frames sent back to back keep their own descriptors: reading one never
// takes the next one's.
func TestFramesBackToBack(t *testing.T) {
	t.Parallel()
	a, b := socketPair(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	hello := helloFrame(t, helloMsg{Version: protocolVersion, Generation: 2, PID: 1, Fds: 3})
	fds1 := fdsFrame(t, []fdMeta{{Name: "r", Kind: kindFile}})
	fds2 := fdsFrame(t, []fdMeta{{Name: "w", Kind: kindFile}, {Name: "r2", Kind: kindFile}})
	ack := ackFrame(t)
	for _, s := range []struct {
		frame []byte
		fds   []int
	}{{hello, nil}, {fds1, []int{int(r.Fd())}}, {fds2, []int{int(w.Fd()), int(r.Fd())}}, {ack, nil}} {
		if err := sendFrame(a, s.frame, s.fds); err != nil {
			t.Fatal(err)
		}
	}
	want := []struct {
		typ   byte
		files []*os.File
	}{{frameHello, nil}, {frameFds, []*os.File{r}}, {frameFds, []*os.File{w, r}}, {frameAck, nil}}
	for i, w := range want {
		typ, _, fds, err := recvFrame(b)
		if err != nil {
			t.Fatalf("frame %d: recvFrame: %v", i, err)
		}
		if typ != w.typ || len(fds) != len(w.files) {
			t.Errorf("frame %d: recvFrame = %q with %d descriptors; want %q with %d", i, typ, len(fds), w.typ, len(w.files))
		}
		for j := range min(len(fds), len(w.files)) {
			if !sameFile(t, fds[j], int(w.files[j].Fd())) {
				t.Errorf("frame %d: descriptor %d is not the one sent", i, j)
			}
		}
		closeFds(fds)
	}
	a.Close()
	if typ, _, fds, err := recvFrame(b); !errors.Is(err, io.EOF) {
		t.Errorf("recvFrame after the peer closed = %q, %d descriptors, %v; want io.EOF", typ, len(fds), err)
	}
}

// A frame that fails to arrive whole leaves no received descriptor open.
func TestRecvFrameErrorsCloseDescriptors(t *testing.T) {
	// Not parallel: it counts the process's descriptors.
	if openFds() < 0 {
		t.Skipf("skipped: cannot count open descriptors on %s", runtime.GOOS)
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	frame := fdsFrame(t, []fdMeta{{Name: "n", Kind: kindFile}})

	cases := []struct {
		name  string
		write []byte
		fds   []int
		want  string // substring of the error
		is    error
	}{
		// 200 > maxFdsPerFrame: the kernel installs what fits in the
		// control buffer (128) and reports MSG_CTRUNC.
		{"more descriptors than fit", frame, slices.Repeat([]int{fd}, 200), "proto:descriptors truncated (MSG_CTRUNC)", nil},
		{"truncated body", frame[:len(frame)-3], slices.Repeat([]int{fd}, 2), "", io.ErrUnexpectedEOF},
		{"truncated header", frame[:3], slices.Repeat([]int{fd}, 2), "", io.ErrUnexpectedEOF},
		{"bad header", append([]byte{'Q'}, frame[1:]...), slices.Repeat([]int{fd}, 5), "proto:unknown frame type 'Q'", nil},
		{"body over the limit", header('F', maxFrameBody+1), slices.Repeat([]int{fd}, 1), "proto:exceeds the limit", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := socketPair(t)
			before := openFds()
			oob := unix.UnixRights(tc.fds...)
			if _, _, err := a.WriteMsgUnix(tc.write, oob, nil); err != nil {
				t.Fatalf("sendmsg with %d descriptors: %v", len(tc.fds), err)
			}
			a.Close()
			typ, body, fds, err := recvFrame(b)
			if tc.is != nil {
				if !errors.Is(err, tc.is) {
					t.Errorf("recvFrame = %v, want %v", err, tc.is)
				}
			} else {
				checkErr(t, "recvFrame", err, tc.want)
			}
			if typ != 0 || body != nil || fds != nil {
				t.Errorf("recvFrame returned %q, %d bytes, descriptors %v with the error; want nothing", typ, len(body), fds)
			}
			// a's descriptor is closed; none of those received may stay open.
			if after := openFds(); after != before-1 {
				t.Errorf("%d descriptors open before, %d after the failed recvFrame; want %d (the sender's end closed, nothing received left open)", before, after, before-1)
			}
		})
	}
}

// socketInode returns the inode of the socket behind fd, the number that
// /proc/PID/fd shows as socket:[inode].
func socketInode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatalf("fstat(%d): %v", fd, err)
	}
	return uint64(st.Ino)
}

// connInodes returns the socket inodes behind cs, read through SyscallConn.
func connInodes(t *testing.T, cs []syscall.Conn) map[uint64]bool {
	t.Helper()
	inodes := make(map[uint64]bool, len(cs))
	for _, c := range cs {
		inodes[socketInode(t, sysFd(t, c))] = true
	}
	return inodes
}

// socketFds counts this process's descriptors that refer to one of the
// sockets in inodes (links socket:[inode] in /proc/self/fd); -1 where the
// system cannot tell. Counting by inode ignores whatever other tests open
// meanwhile.
func socketFds(inodes map[uint64]bool) int {
	n, err := procfs.SocketFDs(os.Getpid(), inodes)
	if err != nil {
		return -1
	}
	return n
}

// A registered listener or packet socket costs the process one descriptor,
// the application's own, however it was registered: Listen, ListenPacket,
// Add, or an inherited one made into a value by Listen or Listener.
func TestOneDescriptorPerSocket(t *testing.T) {
	t.Parallel()
	if socketFds(nil) < 0 {
		t.Skipf("skipped: no /proc/self/fd on %s", runtime.GOOS)
	}
	const each = 50
	u := newTestUpgrader(t)
	var cs []syscall.Conn
	keep := func(c io.Closer) {
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c.(syscall.Conn))
	}
	for i := range each {
		l, err := u.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		keep(l)
		p, err := u.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		keep(p)
		a := tcpListener(t)
		if err := u.Add("added"+strconv.Itoa(i), a); err != nil {
			t.Fatal(err)
		}
		cs = append(cs, a)
		// Inherited, then made into a listener by address and by name.
		for _, name := range []string{"", "inherited" + strconv.Itoa(i)} {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			m := fdMeta{Name: name, Kind: kindListener, Network: "tcp", Actual: l.Addr().String()}
			if name == "" {
				m.Address = m.Actual
			}
			inherit(t, u, m, l.(*net.TCPListener))
			var got net.Listener
			if name == "" {
				got, err = u.Listen("tcp", m.Actual)
			} else {
				got, err = u.Listener(name)
			}
			if err != nil {
				t.Fatal(err)
			}
			keep(got)
		}
	}
	if err := u.Ready(); err != nil {
		t.Fatal(err)
	}
	n := len(cs)
	got := socketFds(connInodes(t, cs))
	t.Logf("%d registered sockets: %d descriptors in this process refer to them (%.2f per socket)", n, got, float64(got)/float64(n))
	if got != n {
		t.Errorf("%d registered sockets are behind %d descriptors of this process; want %d, one each (the registry keeps no copy)", n, got, n)
	}
	if s := u.reg.snapshot(); s.len() != n {
		t.Errorf("an upgrade would pass on %d descriptors, want %d", s.len(), n)
	}
}

// A socket the application closes is closed (the registry holds no copy):
// an upgrade leaves it out. One closed while its batch is being prepared
// fails the upgrade, which the incumbent survives; its descriptor number
// is never sent, so a file that reused it cannot leak to the successor.
func TestUpgradeAfterListenerClosed(t *testing.T) {
	// Not parallel: it counts the process's descriptors.
	dir := t.TempDir()
	u := newTestUpgrader(t)
	var ls []net.Listener
	for range 3 {
		l, err := u.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ls = append(ls, l)
	}
	sock := filepath.Join(dir, "s.sock")
	ul, err := u.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	named := tcpListener(t)
	if err := u.Add("named", named); err != nil {
		t.Fatal(err)
	}

	// Closed before the upgrade: not passed on. The unix socket's file
	// stays until the final Stop, and the name is free again.
	ls[1].Close()
	ul.Close()
	named.Close()
	snap := u.reg.snapshot()
	want := []string{ls[0].Addr().String(), ls[2].Addr().String()}
	var got []string
	for _, m := range snap.metas {
		got = append(got, m.Actual)
	}
	if !slices.Equal(got, want) {
		t.Errorf("after closing a listener, a unix listener and a named one, an upgrade would pass on %v; want %v", got, want)
	}
	if _, err := os.Stat(sock); err != nil {
		t.Errorf("socket file after its listener was closed: %v; want it kept until the final Stop", err)
	}
	again := tcpListener(t)
	if err := u.Add("named", again); err != nil {
		t.Errorf("Add of a name whose socket was closed: %v; want the name free", err)
	}

	// Closed after the snapshot, before its batch is sent: the handshake
	// fails after the hello, without sending a batch or leaking a copy.
	a, b := socketPair(t)
	before := openFds()
	ls[2].Close()
	c := &child{conn: a}
	_, _, err = c.handshake(2, snap)
	if !errors.Is(err, errClosedByApp) || !strings.Contains(err.Error(), ls[2].Addr().String()) {
		t.Errorf("handshake with a listener closed after the snapshot = %v; want an error naming %s that wraps errClosedByApp", err, ls[2].Addr())
	}
	if after := openFds(); before >= 0 && after != before-1 {
		t.Errorf("%d descriptors open before the failed handshake, %d after; want %d (only the closed listener's gone)", before, after, before-1)
	}
	a.Close()
	typ, _, fds, err := recvFrame(b)
	if err != nil || typ != frameHello || len(fds) != 0 {
		t.Errorf("the successor's end got %q, %d descriptors, %v; want the hello alone", typ, len(fds), err)
	}
	if typ, _, fds, err := recvFrame(b); !errors.Is(err, io.EOF) {
		closeFds(fds)
		t.Errorf("after the hello the successor's end got %q with %d descriptors, %v; want EOF (no batch sent)", typ, len(fds), err)
	}

	u.Stop()
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket file of a closed listener after the final Stop: %v; want it removed", err)
	}
}

// Listeners closed by the application while their batches are being sent:
// the handshake either passes on every socket of the snapshot or fails
// with errClosedByApp, and whatever the successor receives is one of those
// sockets, never a file that took a closed listener's descriptor number.
func TestCloseDuringSend(t *testing.T) {
	t.Parallel()
	const n = 3*maxFdsPerFrame + 1
	u := newTestUpgrader(t)
	var ls []net.Listener
	var cs []syscall.Conn
	for range n {
		l, err := u.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		cs = append(cs, l.(syscall.Conn))
	}
	inodes := connInodes(t, cs)
	a, b := socketPair(t)
	snap := u.reg.snapshot()
	sent := make(chan error, 1)
	go func() {
		_, _, err := (&child{conn: a}).handshake(2, snap)
		a.Close() // as the incumbent does when it kills a failed successor
		sent <- err
	}()
	// Close from the end, as the batches go out from the start; files
	// opened meanwhile may take the freed numbers.
	var files []*os.File
	for i := n - 1; i >= n/2; i-- {
		ls[i].Close()
		if f, err := os.Open(os.DevNull); err == nil {
			files = append(files, f)
		}
	}
	p := &parent{pid: os.Getpid(), conn: b}
	es, rerr := p.receive(10 * time.Second)
	b.Close()
	// With every descriptor sent, the handshake waits for a ready that
	// never comes (b is closed): that error is not the point here.
	err := <-sent
	if len(es) != n && !errors.Is(err, errClosedByApp) {
		t.Errorf("handshake while listeners were being closed: %v, and the successor received %d of %d (%v); want all, or errClosedByApp", err, len(es), n, rerr)
	}
	for _, e := range es {
		if !inodes[socketInode(t, e.fd)] {
			t.Errorf("the successor received descriptor %d, which is none of the listeners' sockets", e.fd)
		}
		unix.Close(e.fd)
	}
	for _, f := range files {
		f.Close()
	}
	for _, l := range ls[:n/2] {
		l.Close()
	}
	t.Logf("handshake: %v; successor received %d of %d", err, len(es), n)
}
