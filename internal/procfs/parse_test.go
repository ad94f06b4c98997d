package procfs

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A line as Linux 6.1 writes it for a sleeping process, from field 3 on.
const statTail = " S 1 4242 4242 0 -1 4194560 1086 0 0 0 3 1 0 0 20 0 1 0 98765 5963776 1158 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"

func TestParseStat(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, line string
		want       Stat
	}{
		{"plain", "4242 (sleep)" + statTail, Stat{PID: 4242, Comm: "sleep", State: 'S', PPID: 1, PGID: 4242, Session: 4242, StartTime: 98765}},
		{"comm with spaces and parentheses", "7 (a) b (c))" + statTail, Stat{PID: 7, Comm: "a) b (c)", State: 'S', PPID: 1, PGID: 4242, Session: 4242, StartTime: 98765}},
		{"empty comm", "7 ()" + statTail, Stat{PID: 7, Comm: "", State: 'S', PPID: 1, PGID: 4242, Session: 4242, StartTime: 98765}},
		{"newline in comm", "7 (x\ny)" + statTail, Stat{PID: 7, Comm: "x\ny", State: 'S', PPID: 1, PGID: 4242, Session: 4242, StartTime: 98765}},
		{"zombie", "9 (w) Z 0 0 0 0 -1 4227084 0 0 0 0 0 0 0 0 20 0 1 0 12\n", Stat{PID: 9, Comm: "w", State: 'Z', StartTime: 12}},
		{"no trailing newline", "9 (w) R 2 3 4 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 12", Stat{PID: 9, Comm: "w", State: 'R', PPID: 2, PGID: 3, Session: 4, StartTime: 12}},
	} {
		got, err := ParseStat([]byte(tc.line))
		if err != nil || got != tc.want {
			t.Errorf("%s: ParseStat(%q) = %+v, %v; want %+v", tc.name, tc.line, got, err, tc.want)
		}
	}
	for _, line := range []string{
		"",
		"garbage",
		")",
		"(sleep)" + statTail,                 // no pid
		"4242(sleep)" + statTail,             // no space before (
		"-1 (sleep)" + statTail,              // negative pid
		"0 (sleep)" + statTail,               // pid 0
		"042 (sleep)" + statTail,             // leading zero
		"+42 (sleep)" + statTail,             // sign
		"42 (sleep" + statTail,               // no )
		"42 (sleep)",                         // nothing after comm
		"42 (sleep) S",                       // state only
		"42 (sleep)S 1 2 3",                  // no space before state
		"42 (sleep)  S 1 2 3",                // two spaces
		"42 (sleep) S 1 2 3 0 -1 4194560\n",  // cut before starttime
		"42 (sleep) S x 2 3" + statTail[8:],  // ppid not a number
		"42 (sleep) S -1 2 3" + statTail[8:], // negative ppid
		"42 (sleep) S 1  2 3" + statTail[8:], // empty field
		"4242 (sleep) S 1 4242 4242 0 -1 4194560 1086 0 0 0 3 1 0 0 20 0 1 0 -5\n", // negative start time
	} {
		if st, err := ParseStat([]byte(line)); err == nil {
			t.Errorf("ParseStat(%q) = %+v, nil; want an error", line, st)
		}
	}
}

// FuzzParseStat: any bytes are an error or a Stat, never a panic; a line
// written as the kernel writes it, with any command name, comes back as
// written.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1 (systemd)"+statTail), "sleep", byte('S'), uint32(1), uint64(98765))
	f.Add([]byte("42 (a) b) Z 7 42\n"), "a) b", byte('Z'), uint32(7), uint64(0))
	f.Add([]byte("42 (x"), "x) R 99 (", byte('R'), uint32(1<<31-1), uint64(1<<63))
	f.Add([]byte(")"), "new\nline", byte('D'), uint32(0), uint64(1))
	f.Add([]byte("7 (w) S -3 1"), " ", byte('X'), uint32(4194304), uint64(18446744073709551615))
	f.Fuzz(func(t *testing.T, raw []byte, comm string, state byte, ppid uint32, start uint64) {
		if st, err := ParseStat(raw); err == nil && (st.PID <= 0 || st.PPID < 0 || st.PGID < 0 || st.Session < 0) {
			t.Fatalf("ParseStat(%q) = %+v: a negative id", raw, st)
		}
		if !('A' <= state && state <= 'Z' || 'a' <= state && state <= 'z') {
			state = 'S' // the kernel's states are letters; ')' would be ambiguous
		}
		ppid &= 1<<31 - 1
		// The state as one byte, not %c: a byte above 0x7f is no rune.
		line := fmt.Sprintf("4242 (%s) %s %d 4243 4244 0 -1 4194560 1086 0 0 0 3 1 0 0 20 0 1 0 %d 5963776\n", comm, []byte{state}, ppid, start)
		want := Stat{PID: 4242, Comm: comm, State: state, PPID: int(ppid), PGID: 4243, Session: 4244, StartTime: start}
		if got, err := ParseStat([]byte(line)); err != nil || got != want {
			t.Fatalf("ParseStat(%q) = %+v, %v; want %+v", line, got, err, want)
		}
	})
}

func TestParseSocketLink(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		link  string
		inode uint64
		ok    bool
	}{
		{"socket:[123]", 123, true},
		{"socket:[0]", 0, true},
		{"socket:[18446744073709551615]", 1<<64 - 1, true},
		{"socket:[18446744073709551616]", 0, false},
		{"socket:[]", 0, false},
		{"socket:[+1]", 0, false},
		{"socket:[-1]", 0, false},
		{"socket:[01]", 0, false},
		{"socket:[12", 0, false},
		{"socket:12]", 0, false},
		{"pipe:[123]", 0, false},
		{"/dev/null", 0, false},
		{"anon_inode:[eventpoll]", 0, false},
		{"/tmp/socket:[1]", 0, false},
		{"", 0, false},
	} {
		if inode, ok := ParseSocketLink(tc.link); inode != tc.inode || ok != tc.ok {
			t.Errorf("ParseSocketLink(%q) = %d, %v; want %d, %v", tc.link, inode, ok, tc.inode, tc.ok)
		}
	}
}

// FuzzParseSocketLink: what the kernel writes comes back; whatever parses
// prints back as the same link.
func FuzzParseSocketLink(f *testing.F) {
	f.Add("socket:[123]", uint64(7))
	f.Add("pipe:[1]", uint64(0))
	f.Add("socket:[", uint64(1<<64-1))
	f.Fuzz(func(t *testing.T, link string, inode uint64) {
		if n, ok := ParseSocketLink(link); ok && fmt.Sprintf("socket:[%d]", n) != link {
			t.Fatalf("ParseSocketLink(%q) = %d, true: not the link it came from", link, n)
		}
		l := fmt.Sprintf("socket:[%d]", inode)
		if n, ok := ParseSocketLink(l); !ok || n != inode {
			t.Fatalf("ParseSocketLink(%q) = %d, %v; want %d, true", l, n, ok, inode)
		}
	})
}

func TestParseVmRSS(t *testing.T) {
	t.Parallel()
	status := "Name:\tsleep\nState:\tS (sleeping)\nVmHWM:\t    1024 kB\nVmRSS:\t    1000 kB\nThreads:\t1\n"
	if n, err := ParseVmRSS([]byte(status)); err != nil || n != 1000 {
		t.Errorf("ParseVmRSS = %d, %v; want 1000", n, err)
	}
	for _, bad := range []string{"", "Name:\tkthreadd\n", "VmRSS:\t12\n", "VmRSS:\t-1 kB\n", "VmRSS:\tx kB\n", "VmRSS:\t1 MB\n", "VmRSS:\t+1 kB\n"} {
		if n, err := ParseVmRSS([]byte(bad)); err == nil {
			t.Errorf("ParseVmRSS(%q) = %d, nil; want an error", bad, n)
		}
	}
}

// FuzzParseVmRSS: any status is a size or an error, never negative; a
// VmRSS line as the kernel writes it comes back.
func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("VmRSS:\t    1000 kB\n"), int64(1000))
	f.Add([]byte("Name:\tx\n"), int64(0))
	f.Add([]byte("VmRSS: 9223372036854775808 kB"), int64(1<<62))
	f.Add([]byte("Name:\tsoak.test\nVmPeak:\t 1000 kB\nVmRSS:\t   12345 kB\nThreads:\t7\n"), int64(12345))
	f.Add([]byte("VmRSS:\t0 kB"), int64(0))
	f.Add([]byte("VmRSS: -1 kB\n"), int64(1))
	f.Add([]byte("VmRSS:\t12 MB\n"), int64(1<<40))
	f.Add([]byte("Name:\tx\n"), int64(9223372036854775807))
	f.Fuzz(func(t *testing.T, status []byte, kib int64) {
		if v, err := ParseVmRSS(status); err == nil && v < 0 {
			t.Fatalf("ParseVmRSS(%q) = %d", status, v)
		}
		if kib < 0 {
			kib = -(kib + 1)
		}
		line := []byte(fmt.Sprintf("Name:\tserver\nVmRSS:\t%8d kB\nRssAnon:\t1 kB\n", kib))
		if v, err := ParseVmRSS(line); err != nil || v != kib {
			t.Fatalf("ParseVmRSS(%q) = %d, %v; want %d", line, v, err, kib)
		}
	})
}

const netTCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 31337 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:D431 01 00000000:00000000 00:00000000 00000000  1000        0 31338 1 0000000000000000 20 4 30 10 -1
`

const netTCP6 = `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
`

func TestParseNetTCP(t *testing.T) {
	t.Parallel()
	got, err := ParseNetTCP([]byte(netTCP))
	want := []TCPSocket{
		{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: TCPListen, Inode: 31337},
		{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:54321"), State: TCPEstablished, Inode: 31338},
	}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseNetTCP(tcp) = %v, %v; want %v", got, err, want)
	}
	got, err = ParseNetTCP([]byte(netTCP6))
	want = []TCPSocket{{Local: netip.MustParseAddrPort("[::1]:80"), Remote: netip.MustParseAddrPort("[::]:0"), State: TCPListen, Inode: 4242}}
	if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("ParseNetTCP(tcp6) = %v, %v; want %v", got, err, want)
	}
	if got, err := ParseNetTCP([]byte("header only\n")); err != nil || len(got) != 0 {
		t.Errorf("ParseNetTCP(header) = %v, %v; want nothing", got, err)
	}
	header, _, _ := strings.Cut(netTCP, "\n")
	for _, line := range []string{
		"0: 0100007F:1F90 00000000:0000 0A",
		"0: 0100007F1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
		"0: 0100007F:1F90 00000000:0000 A 0:0 0:0 0 0 0 1",
		"0: 0100007F:1F90 00000000:0000 0A 0:0 0:0 0 0 0 x",
		"0: 0100007G:1F90 00000000:0000 0A 0:0 0:0 0 0 0 1",
		"0: 0100007F:1F9 00000000:0000 0A 0:0 0:0 0 0 0 1",
		"0: 0100007F:1F90 000000:0000 0A 0:0 0:0 0 0 0 1",
	} {
		if got, err := ParseNetTCP([]byte(header + "\n" + line + "\n")); err == nil {
			t.Errorf("ParseNetTCP(%q) = %v, nil; want an error", line, got)
		}
	}
}

// FuzzParseNetTCP: any bytes are sockets or an error; a line written as
// the kernel writes it comes back.
func FuzzParseNetTCP(f *testing.F) {
	f.Add([]byte(netTCP), []byte{127, 0, 0, 1}, uint16(8080), uint8(0x0A), uint64(31337))
	f.Add([]byte(netTCP6), []byte{10, 0, 0, 2}, uint16(0), uint8(1), uint64(0))
	f.Fuzz(func(t *testing.T, raw, ip []byte, port uint16, state uint8, inode uint64) {
		ParseNetTCP(raw)
		var a [4]byte
		copy(a[:], ip)
		line := fmt.Sprintf("h\n   0: %02X%02X%02X%02X:%04X 00000000:0000 %02X 00000000:00000000 00:00000000 00000000  1000        0 %d 1 0 100 0 0 10 0\n", a[3], a[2], a[1], a[0], port, state, inode)
		want := TCPSocket{Local: netip.AddrPortFrom(netip.AddrFrom4(a), port), Remote: netip.MustParseAddrPort("0.0.0.0:0"), State: state, Inode: inode}
		if got, err := ParseNetTCP([]byte(line)); err != nil || len(got) != 1 || got[0] != want {
			t.Fatalf("ParseNetTCP(%q) = %v, %v; want %v", line, got, err, want)
		}
	})
}

func TestParseBootTime(t *testing.T) {
	got, err := ParseBootTime([]byte("cpu  1 2 3\nintr 5\nbtime 1764900000\nprocesses 9\n"))
	if err != nil || !got.Equal(time.Unix(1764900000, 0)) {
		t.Errorf("ParseBootTime = %v, %v; want 1764900000", got, err)
	}
	for _, bad := range []string{"cpu 1\n", "btime \n", "btime 12x\n", "btime -\n"} {
		if _, err := ParseBootTime([]byte(bad)); err == nil {
			t.Errorf("ParseBootTime(%q) accepted it", bad)
		}
	}
}
