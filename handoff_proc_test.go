//go:build linux

package baton_test

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/batonhq/baton/internal/proctest"
)

// These tests play the incumbent by hand against a real successor (the
// "server" helper), writing the wire protocol of doc.go byte by byte,
// so that what the successor must refuse is not limited to what the
// package's own encoder can produce.

// wireFrame is one handoff frame: a type byte, the body length as 4 bytes
// big-endian, the body.
func wireFrame(typ byte, body string) []byte {
	b := make([]byte, 5, 5+len(body))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)))
	return append(b, body...)
}

// wireHello is a hello frame: version u16, generation u32, pid u32, fds u32.
func wireHello(version, generation, pid, fds int) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(generation))
	b = binary.BigEndian.AppendUint32(b, uint32(pid))
	b = binary.BigEndian.AppendUint32(b, uint32(fds))
	return wireFrame('H', string(b))
}

// wireMeta describes one descriptor in an fds frame; kind is its code on
// the wire (1 listener, 2 packet, 3 conn, 4 file).
type wireMeta struct {
	kind                           byte
	name, network, address, actual string
}

// wireFds is an fds frame: a u16 count, then per descriptor its kind code
// and four strings, each a u16 length and the bytes.
func wireFds(metas ...wireMeta) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(metas)))
	for _, m := range metas {
		b = append(b, m.kind)
		for _, s := range []string{m.name, m.network, m.address, m.actual} {
			b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
			b = append(b, s...)
		}
	}
	return wireFrame('F', string(b))
}

// file is the wire description of a file passed on as name.
func file(name string) wireMeta { return wireMeta{kind: 4, name: name} }

// startSuccessor starts the server helper the way Upgrade starts a
// successor: its end of a socketpair at descriptor 3 and
// BATON_HANDOFF=3:<incumbent>. It returns the helper and the incumbent's
// end, which this test speaks for.
func startSuccessor(t *testing.T, incumbent int) (*proctest.Proc, *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("socketpair: %v", err)
	}
	ours := os.NewFile(uintptr(fds[0]), "incumbent")
	theirs := os.NewFile(uintptr(fds[1]), "successor")
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		theirs.Close()
		t.Fatalf("net.FileConn: %v", err)
	}
	conn := c.(*net.UnixConn)
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))

	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serverConfig{Dir: t.TempDir()}.env(), "BATON_HANDOFF=3:"+strconv.Itoa(incumbent))
	cmd.ExtraFiles = []*os.File{theirs} // descriptor 3
	p := proctest.StartCommand(t, "server", cmd)
	theirs.Close()
	return p, conn
}

// readAbort reads the successor's answer, which must be an abort frame, and
// returns its reason.
func readAbort(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	var h [5]byte
	if _, err := io.ReadFull(c, h[:]); err != nil {
		t.Fatalf("reading the successor's answer: %v; want an abort frame", err)
	}
	n := binary.BigEndian.Uint32(h[1:])
	if h[0] != 'X' || n > 1<<20 {
		t.Fatalf("the successor answered with a %q frame of %d bytes; want an abort ('X')", h[0], n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c, body); err != nil {
		t.Fatalf("reading the abort frame's body: %v", err)
	}
	return string(body) // the body is the reason
}

// A successor handed something malformed refuses it: it tells the
// incumbent why in an abort frame, and New fails with the same reason.
func TestSuccessorRefusesMalformedHandoff(t *testing.T) {
	t.Parallel()
	me := os.Getpid()
	devNull, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { devNull.Close() })
	withFds := func(frame []byte, n int) func(*net.UnixConn) error {
		return func(c *net.UnixConn) error {
			fds := make([]int, n)
			for i := range fds {
				fds[i] = int(devNull.Fd())
			}
			_, _, err := c.WriteMsgUnix(frame, unix.UnixRights(fds...), nil)
			return err
		}
	}
	write := func(b []byte) func(*net.UnixConn) error {
		return func(c *net.UnixConn) error { _, err := c.Write(b); return err }
	}
	hangUp := func(c *net.UnixConn) error { return c.CloseWrite() }

	cases := []struct {
		name string
		send []func(*net.UnixConn) error
		want string // in the abort reason and in New's error
	}{
		{"garbage", []func(*net.UnixConn) error{write([]byte("GARBAGE IN\r\n"))}, "unknown frame type 'G'"},
		{"oversized hello", []func(*net.UnixConn) error{write([]byte("H\x00\x20\x00\x00{}"))}, "H frame of 2097152 bytes exceeds the limit of 1048576"},
		{"hello cut short", []func(*net.UnixConn) error{write(wireFrame('H', string(wireHello(4, 2, me, 0)[5:5+13])))}, "H frame of 13 bytes, want 14"},
		{"hello with a byte too many", []func(*net.UnixConn) error{write(wireFrame('H', string(wireHello(4, 2, me, 0)[5:])+"\x00"))}, "H frame of 15 bytes, want 14"},
		// An incumbent from before the binary encoding sends JSON; the
		// first two bytes, '{"', read as a version.
		{"hello in JSON", []func(*net.UnixConn) error{write(wireFrame('H', fmt.Sprintf(`{"version":1,"generation":2,"pid":%d,"fds":0}`, me)))}, "incumbent speaks version 31522, this binary speaks 4"},
		{"version 99", []func(*net.UnixConn) error{write(wireHello(99, 2, me, 0))}, "incumbent speaks version 99, this binary speaks 4"},
		// An incumbent from before the generation link: refused by name,
		// both versions said.
		{"version 1", []func(*net.UnixConn) error{write(wireHello(1, 2, me, 0))}, "incumbent speaks version 1, this binary speaks 4"},
		{"version 2", []func(*net.UnixConn) error{write(wireHello(2, 2, me, 0))}, "incumbent speaks version 2, this binary speaks 4"},
		{"version 3", []func(*net.UnixConn) error{write(wireHello(3, 2, me, 0))}, "incumbent speaks version 3, this binary speaks 4"},
		{"no state after the descriptors", []func(*net.UnixConn) error{write(wireHello(4, 2, me, 0)), write(wireFrame('R', "\x00\x00\x00\x01"))}, `want the state, got 'R' frame`},
		{"state out of order", []func(*net.UnixConn) error{write(wireHello(4, 2, me, 0)), write(wireFrame('V', "\x00\x02\x00\x01b\x00\x00\x00\x00\x00\x01a\x00\x00\x00\x00"))}, `state blob 1: name "a" after "b"`},
		{"hello from another pid", []func(*net.UnixConn) error{write(wireHello(4, 2, me+1, 0))}, fmt.Sprintf("hello from pid %d, but the parent is %d", me+1, me)},
		{"descriptors before hello", []func(*net.UnixConn) error{withFds(wireFds(file("n")), 1)}, "want hello first, got 'F' frame with 1 descriptors"},
		{"two descriptors announced, then EOF", []func(*net.UnixConn) error{write(wireHello(4, 2, me, 2)), hangUp}, "0 of 2 descriptors"},
		{
			"metadata disagrees with the descriptors",
			[]func(*net.UnixConn) error{write(wireHello(4, 2, me, 1)), withFds(wireFds(file("a"), file("b")), 1)},
			"fds frame describes 2 descriptors but carried 1",
		},
		{
			"more descriptors than announced",
			[]func(*net.UnixConn) error{write(wireHello(4, 2, me, 1)), withFds(wireFds(file("a"), file("b")), 2)},
			"received 2 descriptors, hello announced 1",
		},
		{
			"bad descriptor metadata",
			[]func(*net.UnixConn) error{write(wireHello(4, 2, me, 1)), withFds(wireFds(wireMeta{kind: 1, network: "udp"}), 1)},
			`descriptor 0: listener on unknown network "udp"`,
		},
		{
			"unknown kind code",
			[]func(*net.UnixConn) error{write(wireHello(4, 2, me, 1)), withFds(wireFds(wireMeta{kind: 7, name: "x"}), 1)},
			"descriptor 0: unknown kind code 7",
		},
		{
			"trailing bytes after the descriptors",
			[]func(*net.UnixConn) error{write(wireHello(4, 2, me, 1)), withFds(wireFrame('F', string(wireFds(file("a"))[5:])+"zz"), 1)},
			"F frame: 2 bytes after the last descriptor",
		},
		{
			"a name used in two frames",
			[]func(*net.UnixConn) error{write(wireHello(4, 2, me, 3)), withFds(wireFds(file("a"), file("b")), 2), withFds(wireFds(file("a")), 1)},
			`descriptor 2: name "a" already used by descriptor 0`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, c := startSuccessor(t, me)
			for i, send := range tc.send {
				if err := send(c); err != nil {
					t.Fatalf("step %d of the malformed handoff: %v", i, err)
				}
			}
			reason := readAbort(t, c)
			if !strings.Contains(reason, tc.want) {
				t.Errorf("abort reason %q, want it to contain %q", reason, tc.want)
			}
			st, err := p.Wait(15 * time.Second)
			if err == nil || st == nil || st.ExitCode() != 3 {
				t.Fatalf("the successor ended with %v (%v); want exit status 3 from a failed New", st, err)
			}
			line, err := p.WaitLine("new-failed ", 0)
			if err != nil {
				t.Fatalf("the successor did not print new-failed: %v", err)
			}
			if want := fmt.Sprintf("handoff from pid %d: ", me); !strings.Contains(line, want) || !strings.Contains(line, tc.want) {
				t.Errorf("the successor printed %q; want it to contain %q and %q", line, want, tc.want)
			}
			// It closed its end: nothing follows the abort.
			if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
				t.Errorf("after the abort, read %d bytes, %v; want EOF", n, err)
			}
		})
	}
}

// BATON_HANDOFF naming a process that is not the parent is a stray copy: it
// is ignored, removed from the environment, and the process starts afresh.
func TestHandoffFromNonParentIgnored(t *testing.T) {
	t.Parallel()
	notParent := os.Getppid() // the helper's parent is this process
	if notParent < 1 {
		notParent = 1
	}
	p, c := startSuccessor(t, notParent)
	// Everything an incumbent would say: were the helper to take it, it
	// would come up as generation 7.
	if _, err := c.Write(wireHello(4, 7, notParent, 0)); err != nil {
		t.Fatal(err)
	}
	line, err := p.WaitLine("ready gen=", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if gen := proctest.Field(line, "gen"); gen != "1" {
		t.Errorf("started with BATON_HANDOFF=3:%d (not its parent), the helper is generation %s; want 1", notParent, gen)
	}
	if !strings.Contains(p.Output(), "ignoring a handoff from a process that did not start us") {
		t.Errorf("no warning about the stray BATON_HANDOFF in the helper's output")
	}
	resp, err := controlClient.Get("http://" + proctest.Field(line, "tcp") + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := proctest.Field(string(body), "handoff"); got != "false" {
		t.Errorf("GET / = %q; want handoff=false: New removes the stray variable too", body)
	}

	if err := syscall.Kill(p.Pid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if st, err := p.Wait(15 * time.Second); err != nil || !st.Success() {
		t.Fatalf("after SIGTERM the helper ended with %v, %v; want exit status 0", st, err)
	}
	// It never spoke on the handoff socket.
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("the helper wrote to the handoff socket it should have ignored (read %d bytes, %v)", n, err)
	}
}
