package sockdiag

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"syscall"
	"testing"
)

// tcpMessage is what the kernel sends for s: a netlink header and an
// inet_diag_msg, padded to 4 bytes.
func tcpMessage(family uint8, s TCPSocket) []byte {
	b := make([]byte, nlmsgHdrLen+inetDiagMsgLen)
	ne := binary.NativeEndian
	ne.PutUint32(b[0:], uint32(len(b)))
	ne.PutUint16(b[4:], sockDiagByFamily)
	m := b[nlmsgHdrLen:]
	m[0], m[1] = family, s.State
	binary.BigEndian.PutUint16(m[4:], s.Local.Port())
	binary.BigEndian.PutUint16(m[6:], s.Remote.Port())
	if family == afInet {
		l, r := s.Local.Addr().As4(), s.Remote.Addr().As4()
		copy(m[8:], l[:])
		copy(m[24:], r[:])
	} else {
		l, r := s.Local.Addr().As16(), s.Remote.Addr().As16()
		copy(m[8:], l[:])
		copy(m[24:], r[:])
	}
	ne.PutUint32(m[68:], uint32(s.Inode))
	return b
}

func control(typ uint16, body []byte) []byte {
	b := make([]byte, nlmsgHdrLen+len(body))
	binary.NativeEndian.PutUint32(b[0:], uint32(len(b)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	copy(b[nlmsgHdrLen:], body)
	return b
}

func errno(e syscall.Errno) []byte {
	body := make([]byte, 4+nlmsgHdrLen)
	binary.NativeEndian.PutUint32(body, uint32(-int32(e)))
	return control(nlmsgError, body)
}

func TestParseTCP(t *testing.T) {
	v4 := TCPSocket{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:51000"), State: Established, Inode: 4242}
	v6 := TCPSocket{Local: netip.MustParseAddrPort("[::1]:443"), Remote: netip.MustParseAddrPort("[::ffff:10.0.0.1]:9"), State: CloseWait, Inode: 1<<32 - 1}
	datagram := append(append(tcpMessage(afInet, v4), tcpMessage(afInet6, v6)...), control(nlmsgDone, []byte{0, 0, 0, 0})...)
	var got []TCPSocket
	done, err := parseMessages(datagram, func(body []byte) error {
		s, err := parseTCP(body)
		got = append(got, s)
		return err
	})
	if err != nil || !done {
		t.Fatalf("parseMessages = %v, %v; want done", done, err)
	}
	if len(got) != 2 || got[0] != v4 || got[1] != v6 {
		t.Errorf("parsed %+v; want %+v and %+v", got, v4, v6)
	}

	for _, tc := range []struct {
		name string
		b    []byte
		want error // nil: any error
	}{
		{"no such socket", errno(syscall.ENOENT), ErrNoSocket},
		{"permission", errno(syscall.EPERM), syscall.EPERM},
		{"ack", errno(0), nil},
		{"short header", []byte{1, 2, 3}, nil},
		{"length past the end", func() []byte { b := tcpMessage(afInet, v4); binary.NativeEndian.PutUint32(b, 1000); return b }(), nil},
		{"length below a header", func() []byte { b := tcpMessage(afInet, v4); binary.NativeEndian.PutUint32(b, 4); return b }(), nil},
		{"short inet_diag_msg", control(sockDiagByFamily, make([]byte, 40)), nil},
		{"unknown family", tcpMessage(7, v4), nil},
		{"unknown type", control(99, nil), nil},
		{"short error", control(nlmsgError, []byte{1}), nil},
	} {
		_, err := parseMessages(tc.b, func(body []byte) error { _, err := parseTCP(body); return err })
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: err = %v; want %v", tc.name, err, tc.want)
		}
	}
}

func TestRequests(t *testing.T) {
	ne := binary.NativeEndian
	d := tcpDumpRequest(afInet6, Of(Established, FinWait1), 7)
	if len(d) != nlmsgHdrLen+inetDiagReqLen || ne.Uint32(d) != uint32(len(d)) || ne.Uint16(d[6:]) != nlmRequest|nlmDump || ne.Uint32(d[8:]) != 7 {
		t.Errorf("dump request header % x", d[:nlmsgHdrLen])
	}
	if r := d[nlmsgHdrLen:]; r[0] != afInet6 || r[1] != ipprotoTCP || ne.Uint32(r[4:]) != 1<<Established|1<<FinWait1 {
		t.Errorf("dump request body % x", r)
	}
	l := tcpLookupRequest(afInet, netip.MustParseAddrPort("127.0.0.1:80"), netip.MustParseAddrPort("10.1.2.3:5000"), 1)
	r := l[nlmsgHdrLen:]
	if ne.Uint16(l[6:]) != nlmRequest || binary.BigEndian.Uint16(r[8:]) != 80 || binary.BigEndian.Uint16(r[10:]) != 5000 ||
		[4]byte(r[12:16]) != [4]byte{127, 0, 0, 1} || [4]byte(r[28:32]) != [4]byte{10, 1, 2, 3} {
		t.Errorf("lookup request % x", l)
	}
	// A v4 address looked up among AF_INET6 sockets is v4-mapped.
	l6 := tcpLookupRequest(afInet6, netip.MustParseAddrPort("127.0.0.1:80"), netip.MustParseAddrPort("10.1.2.3:5000"), 1)
	if got := netip.AddrFrom16([16]byte(l6[nlmsgHdrLen+12:])); got != netip.MustParseAddr("::ffff:127.0.0.1") {
		t.Errorf("v4 address in an AF_INET6 lookup = %v; want ::ffff:127.0.0.1", got)
	}
	if u := unixDumpRequest(3); u[nlmsgHdrLen] != afUnix || len(u) != nlmsgHdrLen+unixDiagReqLen {
		t.Errorf("unix dump request % x", u)
	}
}

// FuzzParse: no datagram makes the parsers panic or read out of bounds,
// and every socket they return came from a whole message.
func FuzzParse(f *testing.F) {
	s := TCPSocket{Local: netip.MustParseAddrPort("127.0.0.1:8080"), Remote: netip.MustParseAddrPort("127.0.0.1:51000"), State: Established, Inode: 9}
	f.Add(append(tcpMessage(afInet, s), control(nlmsgDone, []byte{0, 0, 0, 0})...))
	f.Add(tcpMessage(afInet6, s))
	f.Add(errno(syscall.ENOENT))
	f.Add(control(sockDiagByFamily, make([]byte, unixDiagMsgLen)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseMessages(b, func(body []byte) error {
			if len(body) > len(b) {
				t.Fatalf("a body of %d bytes from a datagram of %d", len(body), len(b))
			}
			parseTCP(body)
			parseUnixInode(body)
			return nil
		})
	})
}
