package baton

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"
	"time"
	"unicode/utf8"
)

// frame builds a frame by hand, header and all, so that the tests do not
// depend on encodeFrame to produce what the parsers must reject.
func frame(typ byte, body string) []byte {
	b := make([]byte, frameHeaderLen, frameHeaderLen+len(body))
	b[0] = typ
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)))
	return append(b, body...)
}

// header is a frame header announcing n bytes, without the body.
func header(typ byte, n uint32) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], n)
	return b
}

// checkErr fails t unless err is nil when want is "", or contains want. A
// message starting "proto:" must also be a *ProtocolError.
func checkErr(t *testing.T, call string, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("%s: unexpected error %v", call, err)
		}
		return
	}
	proto := strings.HasPrefix(want, "proto:")
	want = strings.TrimPrefix(want, "proto:")
	switch {
	case err == nil:
		t.Errorf("%s: no error, want one containing %q", call, want)
	case !strings.Contains(err.Error(), want):
		t.Errorf("%s: error %q, want it to contain %q", call, err, want)
	case proto:
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			t.Errorf("%s: error %q is a %T, want a *ProtocolError", call, err, err)
		} else if !strings.HasPrefix(err.Error(), "baton: handoff protocol: ") {
			t.Errorf("%s: error %q lacks the prefix %q", call, err, "baton: handoff protocol: ")
		}
	}
}

func TestParseHeader(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		h    []byte
		typ  byte
		n    int
		err  string
	}{
		{"hello", header('H', 42), 'H', 42, ""},
		{"fds", header('F', 7), 'F', 7, ""},
		{"ready", header('R', 0), 'R', 0, ""},
		{"abort", header('X', 1), 'X', 1, ""},
		{"ack", header('A', 4), 'A', 4, ""},
		{"passed", header('P', 0), 'P', 0, ""},
		{"body at the limit", header('F', maxFrameBody), 'F', maxFrameBody, ""},
		{"body over the limit", header('F', maxFrameBody+1), 0, 0, "proto:F frame of 1048577 bytes exceeds the limit of 1048576"},
		{"body of 4 GiB", header('H', 1<<32-1), 0, 0, "proto:H frame of 4294967295 bytes exceeds the limit"},
		{"unknown type", header('Z', 0), 0, 0, `proto:unknown frame type 'Z'`},
		{"lower-case type", header('h', 0), 0, 0, `proto:unknown frame type 'h'`},
		{"NUL type", header(0, 0), 0, 0, `proto:unknown frame type '\x00'`},
		{"empty", nil, 0, 0, "proto:short header (0 bytes)"},
		{"four bytes", []byte("H\x00\x00\x00"), 0, 0, "proto:short header (4 bytes)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			typ, n, err := parseHeader(tc.h)
			call := fmt.Sprintf("parseHeader(%q)", tc.h)
			checkErr(t, call, err, tc.err)
			if typ != tc.typ || n != tc.n {
				t.Errorf("%s = %q, %d; want %q, %d", call, typ, n, tc.typ, tc.n)
			}
		})
	}
}

// Bodies are built by hand too, field by field, as doc.go lays them out.

func u8(v byte) string    { return string([]byte{v}) }
func u16(v uint16) string { return string(binary.BigEndian.AppendUint16(nil, v)) }
func u32(v uint32) string { return string(binary.BigEndian.AppendUint32(nil, v)) }

// str is a string field: a u16 length, then the bytes.
func str(s string) string { return u16(uint16(len(s))) + s }

func helloBody(version uint16, generation, pid, fds uint32) string {
	return u16(version) + u32(generation) + u32(pid) + u32(fds)
}

// metaBody is one descriptor of an fds body.
func metaBody(kind byte, name, network, address, actual string) string {
	return u8(kind) + str(name) + str(network) + str(address) + str(actual)
}

// fdsBody is an fds body: count, then the descriptors as given.
func fdsBody(count uint16, metas ...string) string {
	return u16(count) + strings.Join(metas, "")
}

// helloFrame, fdsFrame and ackFrame are whole frames from the package's
// encoders, for tests about what carries them.
func helloFrame(t testing.TB, m helloMsg) []byte {
	t.Helper()
	body, err := encodeHello(m)
	return mustFrame(t, frameHello, body, err)
}

func fdsFrame(t testing.TB, metas []fdMeta) []byte {
	t.Helper()
	body, err := encodeFds(metas)
	return mustFrame(t, frameFds, body, err)
}

func ackFrame(t testing.TB) []byte {
	t.Helper()
	body, err := encodeAck(0)
	return mustFrame(t, frameAck, body, err)
}

func mustFrame(t testing.TB, typ byte, body []byte, err error) []byte {
	t.Helper()
	if err != nil {
		t.Fatalf("encoding the body of a %c frame: %v", typ, err)
	}
	b, err := encodeFrame(typ, body)
	if err != nil {
		t.Fatalf("encodeFrame(%q, %d bytes): %v", typ, len(body), err)
	}
	return b
}

func TestReadFrame(t *testing.T) {
	t.Parallel()
	hello := frame('H', helloBody(4, 2, 10, 1))
	fds := frame('F', fdsBody(1, metaBody(codeFile, "f", "", "", "")))
	type want struct {
		typ  byte
		body string
	}
	cases := []struct {
		name     string
		stream   []byte
		frames   []want // read in order, then the next readFrame fails with
		err      string // an error containing this, or
		sentinel error  // exactly this error
		left     int    // bytes left in the stream after the error
	}{
		{name: "empty stream", stream: nil, sentinel: io.EOF},
		{name: "one frame", stream: hello, frames: []want{{'H', string(hello[5:])}}, sentinel: io.EOF},
		{name: "empty body", stream: frame('A', ""), frames: []want{{'A', ""}}, sentinel: io.EOF},
		{
			name:     "frames back to back",
			stream:   bytes.Join([][]byte{hello, fds, frame('R', u32(3)), frame('A', "")}, nil),
			frames:   []want{{'H', string(hello[5:])}, {'F', string(fds[5:])}, {'R', u32(3)}, {'A', ""}},
			sentinel: io.EOF,
		},
		{name: "short header", stream: []byte("H\x00\x00"), sentinel: io.ErrUnexpectedEOF},
		{name: "short header after a frame", stream: append(bytes.Clone(hello), 'F', 0), frames: []want{{'H', string(hello[5:])}}, sentinel: io.ErrUnexpectedEOF},
		{name: "header without body", stream: header('R', 4), sentinel: io.ErrUnexpectedEOF},
		{name: "truncated body", stream: hello[:len(hello)-1], sentinel: io.ErrUnexpectedEOF},
		{name: "unknown type", stream: frame('?', "\x00\x01"), err: "proto:unknown frame type '?'", left: 2},
		{name: "body over the limit", stream: append(header('F', maxFrameBody+1), "\x00\x01"...), err: "proto:F frame of 1048577 bytes exceeds the limit of 1048576", left: 2},
		{name: "garbage", stream: []byte("GET / HTTP/1.1\r\n"), err: "proto:unknown frame type 'G'", left: 11},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := bytes.NewReader(tc.stream)
			offset := 0
			for i, w := range tc.frames {
				typ, body, err := readFrame(r)
				if err != nil || typ != w.typ || string(body) != w.body {
					t.Fatalf("frame %d: readFrame = %q, %q, %v; want %q, %q, nil", i, typ, body, err, w.typ, w.body)
				}
				// Never a byte past the frame: descriptors attached to the
				// next frame must stay in the socket.
				offset += frameHeaderLen + len(body)
				if got := len(tc.stream) - r.Len(); got != offset {
					t.Fatalf("frame %d: readFrame consumed the stream up to byte %d; want %d (the end of the frame)", i, got, offset)
				}
			}
			typ, body, err := readFrame(r)
			if tc.sentinel != nil {
				if err != tc.sentinel {
					t.Errorf("readFrame after %d frames = %q, %q, %v; want the error %v itself", len(tc.frames), typ, body, err, tc.sentinel)
				}
			} else {
				checkErr(t, "readFrame", err, tc.err)
			}
			if err != nil && (typ != 0 || body != nil) {
				t.Errorf("readFrame returned %q, %q with the error %v; want zero values", typ, body, err)
			}
			if r.Len() != tc.left {
				t.Errorf("after the error %d bytes are left unread; want %d", r.Len(), tc.left)
			}
		})
	}
}

// readFrame must work over a reader that hands out one byte at a time, as a
// stream socket may, and pass the reader's own errors on.
func TestReadFrameReaders(t *testing.T) {
	t.Parallel()
	hello := helloBody(4, 2, 3, 0)
	stream := append(frame('H', hello), frame('A', "")...)
	r := iotest.OneByteReader(bytes.NewReader(stream))
	for _, want := range []string{hello, ""} {
		if _, body, err := readFrame(r); err != nil || string(body) != want {
			t.Fatalf("readFrame(one byte at a time) = %q, %v; want %q", body, err, want)
		}
	}
	if _, _, err := readFrame(r); err != io.EOF {
		t.Errorf("readFrame at the end of a one-byte reader: %v, want io.EOF", err)
	}

	boom := errors.New("boom")
	if _, _, err := readFrame(iotest.ErrReader(boom)); err != boom {
		t.Errorf("readFrame(reader failing with %v) = %v; want that error", boom, err)
	}
	half := io.MultiReader(bytes.NewReader(frame('R', u32(1))[:7]), iotest.ErrReader(boom))
	if _, _, err := readFrame(half); err != boom {
		t.Errorf("readFrame(reader failing mid-body with %v) = %v; want that error", boom, err)
	}
}

// The encoders lay the bodies out exactly as doc.go says, and what they
// produce, framed and read back, parses to what was encoded.
func TestEncode(t *testing.T) {
	t.Parallel()
	hello := helloMsg{Version: protocolVersion, Generation: 3, PID: 1234, Fds: 130}
	metas := []fdMeta{
		{Kind: kindListener, Network: "tcp", Address: "127.0.0.1:0", Actual: "127.0.0.1:40123"},
		{Kind: kindPacket, Network: "unixgram", Address: "/run/x.sock", Actual: "/run/x.sock"},
		{Name: "db", Kind: kindConn, Network: "tcp", Actual: "10.0.0.1:5432"},
		{Name: "log <&>", Kind: kindFile},
	}
	ready := readyMsg{PID: 99}
	abort := abortMsg{Reason: "config: \"x\" is not valid\n\u00e9"}

	// roundTrip frames body as typ, reads it back, and checks that the body
	// is the wire layout want.
	roundTrip := func(typ byte, body []byte, err error, want string) []byte {
		t.Helper()
		b := mustFrame(t, typ, body, err)
		r := bytes.NewReader(b)
		gotTyp, got, err := readFrame(r)
		if err != nil || gotTyp != typ || r.Len() != 0 {
			t.Fatalf("readFrame of an encoded %c frame = %q, %v with %d bytes left; want %q, nil, 0", typ, gotTyp, err, r.Len(), typ)
		}
		if string(got) != want {
			t.Errorf("%c body\n %q\nwant\n %q", typ, got, want)
		}
		return got
	}

	body, err := encodeHello(hello)
	if got, err := parseHello(roundTrip(frameHello, body, err, helloBody(4, 3, 1234, 130))); err != nil || got != hello {
		t.Errorf("hello round trip: %+v, %v; want %+v", got, err, hello)
	}
	body, err = encodeFds(metas)
	wantFds := fdsBody(4,
		metaBody(1, "", "tcp", "127.0.0.1:0", "127.0.0.1:40123"),
		metaBody(2, "", "unixgram", "/run/x.sock", "/run/x.sock"),
		metaBody(3, "db", "tcp", "", "10.0.0.1:5432"),
		metaBody(4, "log <&>", "", "", ""))
	if got, err := parseFds(roundTrip(frameFds, body, err, wantFds), len(metas)); err != nil || !reflect.DeepEqual(got, metas) {
		t.Errorf("fds round trip: %+v, %v; want %+v", got, err, metas)
	}
	body, err = encodeReady(ready)
	if got, err := parseReady(roundTrip(frameReady, body, err, "\x00\x00\x00\x63")); err != nil || got != ready {
		t.Errorf("ready round trip: %+v, %v; want %+v", got, err, ready)
	}
	if got := parseAbort(roundTrip(frameAbort, encodeAbort(abort), nil, abort.Reason)); got != abort {
		t.Errorf("abort round trip: %+v; want %+v", got, abort)
	}
	for _, p := range []struct {
		d    time.Duration
		wire string
		back time.Duration
	}{
		{0, u32(0), 0},
		{2 * time.Second, u32(2000), 2 * time.Second},
		// Rounded up, so that a probation is never sent as none.
		{time.Nanosecond, u32(1), time.Millisecond},
		{1500 * time.Microsecond, u32(2), 2 * time.Millisecond},
		{MaxProbation, u32(math.MaxUint32), MaxProbation},
	} {
		body, err := encodeAck(p.d)
		if got, err := parseAck(roundTrip(frameAck, body, err, p.wire)); err != nil || got != p.back {
			t.Errorf("ack of probation %v round trip: %v, %v; want %v", p.d, got, err, p.back)
		}
	}
	if err := parsePassed(roundTrip(framePassed, nil, nil, "")); err != nil {
		t.Errorf("passed round trip: %v", err)
	}
	if err := parseServing(roundTrip(frameServing, nil, nil, "")); err != nil {
		t.Errorf("serving round trip: %v", err)
	}

	// The limits themselves go through.
	big := []fdMeta{{
		Name:    strings.Repeat("n", maxNameLen),
		Kind:    kindListener,
		Network: "unixpacket",
		Address: strings.Repeat("a", maxAddressLen),
		Actual:  strings.Repeat("b", maxAddressLen),
	}}
	if body, err := encodeFds(big); err != nil {
		t.Errorf("encodeFds of descriptors at every limit: %v", err)
	} else if got, err := parseFds(body, 1); err != nil || !reflect.DeepEqual(got, big) {
		t.Errorf("parseFds(encodeFds(descriptors at every limit)) = %v; want them back", err)
	}
	limits := helloMsg{Version: 4, Generation: math.MaxInt32, PID: math.MaxInt32, Fds: maxFds}
	if body, err := encodeHello(limits); err != nil {
		t.Errorf("encodeHello(%+v): %v", limits, err)
	} else if got, err := parseHello(body); err != nil || got != limits {
		t.Errorf("parseHello(encodeHello(%+v)) = %+v, %v", limits, got, err)
	}

	// A reason is cut to the limit between characters, and made valid
	// UTF-8, before it is sent.
	long := encodeAbort(abortMsg{Reason: strings.Repeat("r", maxReasonLen-1) + "é" + strings.Repeat("x", maxFrameBody)})
	if want := strings.Repeat("r", maxReasonLen-1); string(long) != want {
		t.Errorf("encodeAbort of a long reason: %d bytes ending %q; want %d bytes ending %q", len(long), tail(string(long)), len(want), tail(want))
	}
	if got, want := string(encodeAbort(abortMsg{Reason: "bad \xff byte"})), "bad \uFFFD byte"; got != want {
		t.Errorf("encodeAbort of invalid UTF-8 = %q, want %q", got, want)
	}

	if _, err := encodeFrame(frameAbort, make([]byte, maxFrameBody+1)); err == nil ||
		!strings.Contains(err.Error(), "X frame of 1048577 bytes exceeds the limit of 1048576") {
		t.Errorf("encodeFrame of a body over the limit: %v; want it refused with the size and the limit", err)
	}
	if b, err := encodeFrame(frameFds, make([]byte, maxFrameBody)); err != nil || len(b) != frameHeaderLen+maxFrameBody {
		t.Errorf("encodeFrame of a body at the limit: %d bytes, %v; want %d bytes", len(b), err, frameHeaderLen+maxFrameBody)
	}
}

// An encoder refuses what its parser would refuse, and what its field
// cannot hold: the incumbent never sends what its successor must reject.
func TestEncodeRefuses(t *testing.T) {
	t.Parallel()
	hello := func(v, g, p, n int) error { _, err := encodeHello(helloMsg{v, g, p, n}); return err }
	fds := func(metas ...fdMeta) error { _, err := encodeFds(metas); return err }
	ready := func(pid int) error { _, err := encodeReady(readyMsg{pid}); return err }
	file := fdMeta{Name: "f", Kind: kindFile}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"hello version 1", hello(1, 1, 1, 0), "proto:incumbent speaks version 1, this binary speaks 4"},
		{"hello version 2", hello(2, 1, 1, 0), "proto:incumbent speaks version 2, this binary speaks 4"},
		{"hello version 3", hello(3, 1, 1, 0), "proto:incumbent speaks version 3, this binary speaks 4"},
		{"hello version 5", hello(5, 1, 1, 0), "proto:incumbent speaks version 5, this binary speaks 4"},
		{"hello version 65537", hello(1<<16+1, 1, 1, 0), "proto:incumbent speaks version 65537"},
		{"hello generation 0", hello(4, 0, 1, 0), "proto:bad generation 0"},
		{"hello generation over 31 bits", hello(4, 1<<31, 1, 0), "proto:bad generation 2147483648"},
		{"hello generation over 32 bits", hello(4, 1<<32+1, 1, 0), "proto:bad generation 4294967297"},
		{"hello pid 0", hello(4, 1, 0, 0), "proto:bad incumbent pid 0"},
		{"hello pid -1", hello(4, 1, -1, 0), "proto:bad incumbent pid -1"},
		{"hello fds -1", hello(4, 1, 1, -1), "proto:bad descriptor count -1"},
		{"hello fds over the limit", hello(4, 1, 1, maxFds+1), "proto:bad descriptor count 1048577"},
		{"no descriptors", fds(), "proto:fds frame with 0 descriptors (want 1 to 128)"},
		{"too many descriptors", fds(slices.Repeat([]fdMeta{{Kind: kindListener, Network: "tcp"}}, maxFdsPerFrame+1)...), "proto:fds frame with 129 descriptors"},
		{"kind without a code", fds(fdMeta{Name: "x", Kind: "pipe"}), `proto:descriptor 0: unknown kind "pipe"`},
		{"name over the limit", fds(fdMeta{Name: strings.Repeat("n", maxNameLen+1), Kind: kindFile}), "proto:descriptor 0: name of 256 bytes"},
		{"network over the limit", fds(fdMeta{Name: "f", Kind: kindFile, Network: strings.Repeat("t", maxNetworkLen+1)}), "proto:descriptor 0: network of 17 bytes"},
		{"address over 16 bits", fds(file, fdMeta{Kind: kindListener, Network: "unix", Address: strings.Repeat("a", 1<<16)}), "proto:descriptor 1: address too long"},
		{"actual over the limit", fds(fdMeta{Kind: kindListener, Network: "unix", Actual: strings.Repeat("a", maxAddressLen+1)}), "proto:descriptor 0: address too long"},
		{"bad network", fds(fdMeta{Kind: kindPacket, Network: "tcp"}), `proto:descriptor 0: packet on unknown network "tcp"`},
		{"name twice", fds(file, fdMeta{Kind: kindListener, Network: "tcp"}, file), `proto:descriptor 2: name "f" used twice`},
		{"ready pid 0", ready(0), "proto:ready from bad pid 0"},
		{"ready pid over 32 bits", ready(1<<32 + 5), "proto:ready from bad pid 4294967301"},
	}
	for _, tc := range cases {
		checkErr(t, tc.name, tc.err, tc.want)
	}
}

func TestParseHello(t *testing.T) {
	t.Parallel()
	valid := helloBody(4, 2, 100, 3)
	cases := []struct {
		name string
		body string
		want helloMsg
		err  string
	}{
		{"valid", valid, helloMsg{4, 2, 100, 3}, ""},
		{"smallest", helloBody(4, 1, 1, 0), helloMsg{4, 1, 1, 0}, ""},
		{"largest", helloBody(4, math.MaxInt32, math.MaxInt32, maxFds), helloMsg{4, math.MaxInt32, math.MaxInt32, maxFds}, ""},

		{"version 99", helloBody(99, 2, 100, 3), helloMsg{}, "proto:incumbent speaks version 99, this binary speaks 4"},
		{"version 0", helloBody(0, 2, 100, 3), helloMsg{}, "proto:incumbent speaks version 0"},
		// The version is judged before the length: a later incumbent's
		// hello may be longer or shorter, and must be reported as such.
		{"version 5, longer", helloBody(5, 2, 100, 3) + "more", helloMsg{}, "proto:incumbent speaks version 5, this binary speaks 4"},
		{"version 5, shorter", u16(5) + u32(2), helloMsg{}, "proto:incumbent speaks version 5"},
		// A version 1 incumbent (before the generation link) or 2
		// (before probation: its ack is empty) is told apart clearly,
		// by both versions.
		{"version 2", helloBody(2, 2, 100, 3), helloMsg{}, "proto:incumbent speaks version 2, this binary speaks 4"},
		// Version 3 sends ready without the relay socket.
		{"version 3", helloBody(3, 2, 100, 3), helloMsg{}, "proto:incumbent speaks version 3, this binary speaks 4"},
		{"version 1", u16(1) + u32(2) + u32(100) + u32(3), helloMsg{}, "proto:incumbent speaks version 1, this binary speaks 4"},
		// An incumbent from before the binary encoding sends JSON: '{"'.
		{"JSON", `{"version":1,"generation":2,"pid":100,"fds":3}`, helloMsg{}, "proto:incumbent speaks version 31522, this binary speaks 4"},

		{"generation 0", helloBody(4, 0, 100, 3), helloMsg{}, "proto:bad generation 0"},
		{"generation over 31 bits", helloBody(4, 1<<31, 100, 3), helloMsg{}, "proto:bad generation 2147483648"},
		{"generation all ones", helloBody(4, 1<<32-1, 100, 3), helloMsg{}, "proto:bad generation 4294967295"},
		{"pid 0", helloBody(4, 2, 0, 3), helloMsg{}, "proto:bad incumbent pid 0"},
		{"pid over 31 bits", helloBody(4, 2, 1<<31, 3), helloMsg{}, "proto:bad incumbent pid 2147483648"},
		{"pid all ones", helloBody(4, 2, 1<<32-1, 3), helloMsg{}, "proto:bad incumbent pid 4294967295"},
		{"fds over the limit", helloBody(4, 2, 100, maxFds+1), helloMsg{}, "proto:bad descriptor count 1048577"},
		{"fds all ones", helloBody(4, 2, 100, 1<<32-1), helloMsg{}, "proto:bad descriptor count 4294967295"},

		{"empty", "", helloMsg{}, "proto:H frame of 0 bytes, want 14"},
		{"one byte", "\x00", helloMsg{}, "proto:H frame of 1 bytes, want 14"},
		{"version only", u16(4), helloMsg{}, "proto:H frame of 2 bytes, want 14"},
		{"last byte missing", valid[:13], helloMsg{}, "proto:H frame of 13 bytes, want 14"},
		{"trailing byte", valid + "\x00", helloMsg{}, "proto:H frame of 15 bytes, want 14"},
		{"two hellos", valid + valid, helloMsg{}, "proto:H frame of 28 bytes, want 14"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseHello([]byte(tc.body))
			call := fmt.Sprintf("parseHello(%q)", tc.body)
			checkErr(t, call, err, tc.err)
			if got != tc.want {
				t.Errorf("%s = %+v, want %+v", call, got, tc.want)
			}
		})
	}
}

func TestParseFds(t *testing.T) {
	t.Parallel()
	listener := metaBody(codeListener, "", "tcp", "127.0.0.1:0", "127.0.0.1:40000")
	file := metaBody(codeFile, "data", "", "", "")
	many := func(n int) string { return fdsBody(uint16(n), slices.Repeat([]string{listener}, n)...) }
	// one is a body of one descriptor of kind k with these fields.
	one := func(k byte, name, network, address, actual string) string {
		return fdsBody(1, metaBody(k, name, network, address, actual))
	}
	long := func(n int) string { return strings.Repeat("a", n) }

	cases := []struct {
		name string
		body string
		nfds int
		want int // descriptors described, if no error
		err  string
	}{
		{"one listener", many(1), 1, 1, ""},
		{"every kind", fdsBody(5, listener, file,
			metaBody(codePacket, "", "udp", ":53", "[::]:53"),
			metaBody(codeConn, "peer", "unix", "", "/run/a.sock"),
			metaBody(codeListener, "", "unix", "@abstract", "")), 5, 5, ""},
		{"the most in one frame", many(maxFdsPerFrame), maxFdsPerFrame, maxFdsPerFrame, ""},

		{"more metadata than descriptors", many(2), 1, 0, "proto:fds frame describes 2 descriptors but carried 1"},
		{"more descriptors than metadata", many(1), 3, 0, "proto:fds frame describes 1 descriptors but carried 3"},
		{"metadata without descriptors", many(1), 0, 0, "proto:fds frame describes 1 descriptors but carried 0"},
		{"count of 0", fdsBody(0), 0, 0, "proto:fds frame with 0 descriptors (want 1 to 128)"},
		{"too many in one frame", many(maxFdsPerFrame + 1), maxFdsPerFrame + 1, 0, "proto:fds frame with 129 descriptors (want 1 to 128)"},
		{"empty", "", 0, 0, "proto:F frame of 0 bytes, too short for the descriptor count"},
		{"half a count", "\x00", 1, 0, "proto:F frame of 1 bytes, too short for the descriptor count"},
		// An incumbent from before the binary encoding sends JSON: '[{'.
		{"JSON", `[{"name":"data","kind":"file"}]`, 1, 0, "proto:fds frame describes 23419 descriptors but carried 1"},

		{"count larger than the body", fdsBody(3, listener), 3, 0, "proto:descriptor 1: truncated before its kind"},
		{"trailing byte", fdsBody(1, file) + "\x00", 1, 0, "proto:F frame: 1 bytes after the last descriptor"},
		{"one descriptor more than counted", fdsBody(1, file, listener), 1, 0, fmt.Sprintf("proto:F frame: %d bytes after the last descriptor", len(listener))},

		{"kind code 0", one(0, "", "tcp", ":80", ""), 1, 0, "proto:descriptor 0: unknown kind code 0"},
		{"kind code 5", one(5, "x", "", "", ""), 1, 0, "proto:descriptor 0: unknown kind code 5"},
		{"kind code 255", one(255, "x", "", "", ""), 1, 0, "proto:descriptor 0: unknown kind code 255"},
		{"kind as a letter", one('L', "", "tcp", "", ""), 1, 0, "proto:descriptor 0: unknown kind code 76"},
		{"bad second descriptor", fdsBody(2, listener, metaBody(9, "", "", "", "")), 2, 0, "proto:descriptor 1: unknown kind code 9"},
		{"file without name", one(codeFile, "", "", "", ""), 1, 0, "proto:descriptor 0: file without a name"},
		{"listener with neither name nor network", one(codeListener, "", "", ":80", ""), 1, 0, "proto:descriptor 0: listener with neither name nor network"},
		{"conn with neither name nor network", one(codeConn, "", "", "", ""), 1, 0, "conn with neither name nor network"},
		{"named listener without network", one(codeListener, "l", "", "", ""), 1, 1, ""},
		{"name used twice", fdsBody(3, file, listener, file), 3, 0, `proto:descriptor 2: name "data" used twice`},
		{"two unnamed on one address", fdsBody(2, listener, listener), 2, 2, ""},

		{"listener on tcp6", one(codeListener, "", "tcp6", "", ""), 1, 1, ""},
		{"listener on unixpacket", one(codeListener, "", "unixpacket", "", ""), 1, 1, ""},
		{"listener on udp", one(codeListener, "", "udp", "", ""), 1, 0, `proto:descriptor 0: listener on unknown network "udp"`},
		{"listener on unixgram", one(codeListener, "", "unixgram", "", ""), 1, 0, `network "unixgram"`},
		{"packet on udp4", one(codePacket, "", "udp4", "", ""), 1, 1, ""},
		{"packet on unixgram", one(codePacket, "", "unixgram", "", ""), 1, 1, ""},
		{"packet on tcp", one(codePacket, "", "tcp", "", ""), 1, 0, `proto:descriptor 0: packet on unknown network "tcp"`},
		{"packet on unix", one(codePacket, "", "unix", "", ""), 1, 0, `network "unix"`},
		{"conn on tcp", one(codeConn, "", "tcp", "", ""), 1, 1, ""},
		{"conn on udp6", one(codeConn, "", "udp6", "", ""), 1, 1, ""},
		{"conn on unixgram", one(codeConn, "", "unixgram", "", ""), 1, 1, ""},
		{"conn on ip", one(codeConn, "", "ip4:icmp", "", ""), 1, 0, `proto:descriptor 0: conn on unknown network "ip4:icmp"`},
		{"named conn on bad network", one(codeConn, "c", "sctp", "", ""), 1, 0, `network "sctp"`},
		{"network in capitals", one(codeListener, "", "TCP", "", ""), 1, 0, `network "TCP"`},

		{"name at the limit", one(codeFile, long(maxNameLen), "", "", ""), 1, 1, ""},
		{"name over the limit", one(codeFile, long(maxNameLen+1), "", "", ""), 1, 0, "proto:descriptor 0: name of 256 bytes exceeds the limit of 255"},
		{"network at the limit", one(codeFile, "f", long(maxNetworkLen), "", ""), 1, 1, ""},
		{"network over the limit", one(codeListener, "", long(maxNetworkLen+1), "", ""), 1, 0, "proto:descriptor 0: network of 17 bytes exceeds the limit of 16"},
		{"address at the limit", one(codeListener, "", "unix", long(maxAddressLen), ""), 1, 1, ""},
		{"address over the limit", one(codeListener, "", "unix", long(maxAddressLen+1), ""), 1, 0, "proto:descriptor 0: address of 4097 bytes exceeds the limit of 4096"},
		{"actual at the limit", one(codeListener, "", "unix", "", long(maxAddressLen)), 1, 1, ""},
		{"actual over the limit", one(codeListener, "", "unix", "", long(maxAddressLen+1)), 1, 0, "proto:descriptor 0: actual address of 4097 bytes exceeds the limit of 4096"},

		// A length is held to its limit before it is held to what is
		// left, so a huge one is reported as such.
		{"name length all ones", fdsBody(1, u8(codeFile)+u16(1<<16-1)+"x"), 1, 0, "proto:descriptor 0: name of 65535 bytes exceeds the limit of 255"},
		{"name longer than the rest", fdsBody(1, u8(codeFile)+u16(10)+"abc"), 1, 0, "proto:descriptor 0: name of 10 bytes, but only 3 left"},
		{"network longer than the rest", fdsBody(1, u8(codeListener)+str("")+u16(3)+"tc"), 1, 0, "proto:descriptor 0: network of 3 bytes, but only 2 left"},
		{"address longer than the rest", fdsBody(1, u8(codeListener)+str("")+str("tcp")+u16(4096)), 1, 0, "proto:descriptor 0: address of 4096 bytes, but only 0 left"},
		{"actual longer than the rest", fdsBody(2, listener, u8(codeListener)+str("")+str("tcp")+str(":80")+u16(20)+":80"), 2, 0, "proto:descriptor 1: actual address of 20 bytes, but only 3 left"},
		{"cut in a length", fdsBody(1, u8(codeFile)+"\x00"), 1, 0, "proto:descriptor 0: truncated in the length of its name"},
		{"cut before the actual address", fdsBody(1, u8(codeListener)+str("")+str("tcp")+str(":80")), 1, 0, "proto:descriptor 0: truncated in the length of its actual address"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFds([]byte(tc.body), tc.nfds)
			call := fmt.Sprintf("parseFds(%.80q, %d)", tc.body, tc.nfds)
			checkErr(t, call, err, tc.err)
			if err != nil && got != nil {
				t.Errorf("%s returned %d descriptions with the error; want nil", call, len(got))
			}
			if err == nil && len(got) != tc.want {
				t.Errorf("%s described %d descriptors, want %d", call, len(got), tc.want)
			}
		})
	}
}

// Every prefix of a valid fds body is refused, and so is the body with
// any byte more.
func TestParseFdsCut(t *testing.T) {
	t.Parallel()
	body := fdsBody(2,
		metaBody(codeListener, "", "tcp", "127.0.0.1:0", "127.0.0.1:40000"),
		metaBody(codeConn, "peer", "unix", "", "@x"))
	if _, err := parseFds([]byte(body), 2); err != nil {
		t.Fatalf("parseFds(%q, 2): %v", body, err)
	}
	for n := range len(body) {
		if got, err := parseFds([]byte(body[:n]), 2); err == nil {
			t.Errorf("parseFds of the first %d of %d bytes accepted %+v", n, len(body), got)
		} else {
			checkErr(t, fmt.Sprintf("parseFds(%q, 2)", body[:n]), err, "proto:")
		}
	}
	for _, b := range []byte{0, 1, 'x', 0xff} {
		if got, err := parseFds([]byte(body+string(b)), 2); err == nil {
			t.Errorf("parseFds of the body and a byte %#x accepted %+v", b, got)
		}
	}
}

func TestParseReady(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
		pid  int
		err  string
	}{
		{"pid", u32(4242), 4242, ""},
		{"pid 1", u32(1), 1, ""},
		{"largest pid", u32(math.MaxInt32), math.MaxInt32, ""},
		{"pid 0", u32(0), 0, "proto:ready from bad pid 0"},
		{"pid over 31 bits", u32(1 << 31), 0, "proto:ready from bad pid 2147483648"},
		{"pid all ones", u32(1<<32 - 1), 0, "proto:ready from bad pid 4294967295"},
		{"empty", "", 0, "proto:R frame of 0 bytes, want 4"},
		{"short", "\x00\x00\x10", 0, "proto:R frame of 3 bytes, want 4"},
		{"trailing byte", u32(4242) + "\x00", 0, "proto:R frame of 5 bytes, want 4"},
		{"JSON", `{"pid":4242}`, 0, "proto:R frame of 12 bytes, want 4"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseReady([]byte(tc.body))
			call := fmt.Sprintf("parseReady(%q)", tc.body)
			checkErr(t, call, err, tc.err)
			if got.PID != tc.pid {
				t.Errorf("%s = %+v, want pid %d", call, got, tc.pid)
			}
		})
	}
}

func TestParseAbort(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		body string
		want string
	}{
		{"reason", "listen tcp :80: permission denied", "listen tcp :80: permission denied"},
		{"no reason", "", ""},
		{"lines and quotes", "config:\n\t\"x\" is bad", "config:\n\t\"x\" is bad"},
		{"looks like JSON", `{"reason":"x"}`, `{"reason":"x"}`},
		{"at the limit", strings.Repeat("r", maxReasonLen), strings.Repeat("r", maxReasonLen)},
		{"long reason is cut", strings.Repeat("r", 3*maxReasonLen), strings.Repeat("r", maxReasonLen)},
		// A cut must not split a character: the reason ends up in errors
		// and logs, and a torn rune is invalid UTF-8 there.
		{"cut between characters", strings.Repeat("r", maxReasonLen-1) + "ééé", strings.Repeat("r", maxReasonLen-1)},
		{"invalid UTF-8 replaced", "bad \xff\xfe byte", "bad \uFFFD byte"},
		{"torn rune at the end", "cut é"[:5], "cut \uFFFD"},
		{"replacement pushed past the limit", strings.Repeat("r", maxReasonLen-1) + "\xff", strings.Repeat("r", maxReasonLen-1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := parseAbort([]byte(tc.body))
			call := fmt.Sprintf("parseAbort(%.60q…)", tc.body)
			if got.Reason != tc.want {
				t.Errorf("%s: reason of %d bytes ending %q, want %d bytes ending %q",
					call, len(got.Reason), tail(got.Reason), len(tc.want), tail(tc.want))
			}
			if !utf8.ValidString(got.Reason) {
				t.Errorf("%s: reason ending %q is not valid UTF-8", call, tail(got.Reason))
			}
		})
	}
}

func tail(s string) string { return s[max(0, len(s)-8):] }

func TestParseAck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body string
		want time.Duration
		err  string
	}{
		{u32(0), 0, ""},
		{u32(100), 100 * time.Millisecond, ""},
		{u32(math.MaxUint32), MaxProbation, ""},
		// A version 2 ack, empty, is refused: that incumbent was
		// refused at the hello already.
		{"", 0, "proto:A frame of 0 bytes, want 4"},
		{"{}", 0, "proto:A frame of 2 bytes, want 4"},
		{"\x00", 0, "proto:A frame of 1 bytes, want 4"},
		{u32(1) + "\x00", 0, "proto:A frame of 5 bytes, want 4"},
	} {
		got, err := parseAck([]byte(tc.body))
		checkErr(t, fmt.Sprintf("parseAck(%q)", tc.body), err, tc.err)
		if got != tc.want {
			t.Errorf("parseAck(%q) = %v; want %v", tc.body, got, tc.want)
		}
	}
	checkErr(t, `parsePassed("")`, parsePassed(nil), "")
	checkErr(t, `parsePassed("\x00")`, parsePassed([]byte{0}), "proto:P frame of 1 bytes, want 0")
	for _, d := range []time.Duration{-1, MaxProbation + time.Millisecond} {
		_, err := encodeAck(d)
		checkErr(t, fmt.Sprintf("encodeAck(%v)", d), err, "proto:probation")
	}
}

// Kind codes are part of the protocol: they must not change.
func TestKindCodes(t *testing.T) {
	t.Parallel()
	for k, c := range map[fdKind]byte{kindListener: 1, kindPacket: 2, kindConn: 3, kindFile: 4, "": 0, "pipe": 0} {
		if got := k.code(); got != c {
			t.Errorf("fdKind(%q).code() = %d, want %d", k, got, c)
		}
		if got, ok := kindOf(c); c != 0 && (!ok || got != k) {
			t.Errorf("kindOf(%d) = %q, %v; want %q, true", c, got, ok, k)
		}
	}
	for _, c := range []byte{0, 5, 'l', 255} {
		if got, ok := kindOf(c); ok {
			t.Errorf("kindOf(%d) = %q, true; want no kind", c, got)
		}
	}
}

func TestParseHandoffEnv(t *testing.T) {
	t.Parallel()
	cases := []struct {
		v        string
		fd, ppid int
		ok       bool
	}{
		{"3:1", 3, 1, true},
		{"3:4194304", 3, 4194304, true},
		{"17:250", 17, 250, true},
		{"1048576:9", 1 << 20, 9, true},
		{"1048577:9", 0, 0, false}, // more descriptors than any process has
		{"2:9", 0, 0, false},       // stderr
		{"0:9", 0, 0, false},
		{"-3:9", 0, 0, false},
		{"3:0", 0, 0, false},
		{"3:-9", 0, 0, false},
		{"", 0, 0, false},
		{"3", 0, 0, false},
		{"3:", 0, 0, false},
		{":9", 0, 0, false},
		{":", 0, 0, false},
		{"3;9", 0, 0, false},
		{"3:9:1", 0, 0, false},
		{" 3:9", 0, 0, false},
		{"3:9\n", 0, 0, false},
		{"0x3:9", 0, 0, false},
		{"three:nine", 0, 0, false},
		{"99999999999999999999:9", 0, 0, false},
		{"3:99999999999999999999", 0, 0, false},
		{"BATON_HANDOFF=3:9", 0, 0, false},
	}
	for _, tc := range cases {
		fd, ppid, err := parseHandoffEnv(tc.v)
		call := fmt.Sprintf("parseHandoffEnv(%q)", tc.v)
		if !tc.ok {
			checkErr(t, call, err, fmt.Sprintf("baton: BATON_HANDOFF=%q: want <fd>:<pid>", tc.v))
			if fd != 0 || ppid != 0 {
				t.Errorf("%s = %d, %d with the error; want 0, 0", call, fd, ppid)
			}
			continue
		}
		if err != nil || fd != tc.fd || ppid != tc.ppid {
			t.Errorf("%s = %d, %d, %v; want %d, %d, nil", call, fd, ppid, err, tc.fd, tc.ppid)
		}
	}
}

func TestFormatHandoffEnv(t *testing.T) {
	t.Parallel()
	if got, want := formatHandoffEnv(3, 4711), "BATON_HANDOFF=3:4711"; got != want {
		t.Errorf("formatHandoffEnv(3, 4711) = %q, want %q", got, want)
	}
	for _, c := range [][2]int{{3, 1}, {3, 4194304}, {1 << 20, 1 << 30}, {250, 12}} {
		fd, ppid, err := parseHandoffEnv(handoffEnvValue(t, formatHandoffEnv(c[0], c[1])))
		if err != nil || fd != c[0] || ppid != c[1] {
			t.Errorf("parseHandoffEnv(formatHandoffEnv(%d, %d)) = %d, %d, %v; want them back", c[0], c[1], fd, ppid, err)
		}
	}
}

// handoffEnvValue returns the value of a BATON_HANDOFF=<value> entry.
func handoffEnvValue(t *testing.T, kv string) string {
	t.Helper()
	v, ok := strings.CutPrefix(kv, envHandoff+"=")
	if !ok {
		t.Fatalf("formatHandoffEnv returned %q, want it to start with %s=", kv, envHandoff)
	}
	return v
}

// FuzzReadFrames decodes a byte stream frame by frame, as the two ends of a
// handoff do, and parses each frame as its type says.
func FuzzReadFrames(f *testing.F) {
	f.Fuzz(func(t *testing.T, stream []byte) {
		r := bytes.NewReader(stream)
		for i := 0; ; i++ {
			start := len(stream) - r.Len()
			typ, body, err := readFrame(r)
			if err != nil {
				var pe *ProtocolError
				switch {
				case err == io.EOF && start != len(stream):
					t.Fatalf("frame %d: io.EOF with %d bytes left; want io.ErrUnexpectedEOF", i, len(stream)-start)
				case err == io.EOF, err == io.ErrUnexpectedEOF, errors.As(err, &pe):
				default:
					t.Fatalf("frame %d: unexpected error %T %v", i, err, err)
				}
				return
			}
			if cap(body) > maxFrameBody {
				t.Fatalf("frame %d: a body of %d bytes (capacity %d) got past the limit of %d", i, len(body), cap(body), maxFrameBody)
			}
			end := len(stream) - r.Len()
			if end != start+frameHeaderLen+len(body) {
				t.Fatalf("frame %d of %d body bytes: read bytes %d to %d of the stream; want up to %d", i, len(body), start, end, start+frameHeaderLen+len(body))
			}
			checkFrame(t, stream[start:end], typ, body)
		}
	})
}

// checkFrame parses one frame, raw as it came, header and all. Whatever
// the parser accepts must satisfy the protocol's limits, and its encoder
// must give back the very same bytes: there is one encoding of each message.
func checkFrame(t *testing.T, raw []byte, typ byte, body []byte) {
	switch typ {
	case frameHello:
		m, err := parseHello(body)
		if err != nil {
			return
		}
		if m.Version != protocolVersion || m.Generation < 1 || m.PID < 1 || m.Fds < 0 || m.Fds > maxFds {
			t.Fatalf("parseHello(%q) accepted %+v", body, m)
		}
		enc, err := encodeHello(m)
		sameFrame(t, raw, typ, enc, err, m)
	case frameFds:
		// The stream carries no descriptors: pretend the frame came with
		// as many as it says it describes.
		nfds := 0
		if len(body) >= 2 {
			nfds = int(binary.BigEndian.Uint16(body))
		}
		metas, err := parseFds(body, nfds)
		if err != nil {
			return
		}
		if len(metas) < 1 || len(metas) > maxFdsPerFrame {
			t.Fatalf("parseFds(%q, %d) accepted %d descriptors", body, nfds, len(metas))
		}
		for i, m := range metas {
			if err := m.validate(); err != nil {
				t.Fatalf("parseFds(%q) accepted descriptor %d (%+v), which does not validate: %v", body, i, m, err)
			}
		}
		if _, err := parseFds(body, len(metas)+1); err == nil {
			t.Fatalf("parseFds(%q, %d) accepted metadata for %d descriptors", body, len(metas)+1, len(metas))
		}
		enc, err := encodeFds(metas)
		sameFrame(t, raw, typ, enc, err, metas)
	case frameReady, frameTakeover:
		// A takeover request on the control socket is laid out as a
		// ready frame: the asker's pid.
		m, err := parseReady(body)
		if err != nil {
			return
		}
		if m.PID < 1 || m.PID > math.MaxInt32 {
			t.Fatalf("parseReady(%q) accepted %+v", body, m)
		}
		enc, err := encodeReady(m)
		sameFrame(t, raw, typ, enc, err, m)
	case frameAbort:
		m := parseAbort(body)
		if len(m.Reason) > maxReasonLen || !utf8.ValidString(m.Reason) {
			t.Fatalf("parseAbort(%.80q) gave a reason of %d bytes ending %q; want at most %d bytes of valid UTF-8",
				body, len(m.Reason), tail(m.Reason), maxReasonLen)
		}
		enc := encodeAbort(m)
		if len(body) <= maxReasonLen && utf8.Valid(body) {
			// Taken as it came: it must go out as it came.
			sameFrame(t, raw, typ, enc, nil, m)
		} else if again := parseAbort(enc); again != m {
			// Cut or mended: it must stay so.
			t.Fatalf("abort reason %.80q changed through encodeAbort to %.80q", m.Reason, again.Reason)
		}
	case frameAck:
		d, err := parseAck(body)
		if err != nil {
			return
		}
		if d < 0 || d > MaxProbation || d%time.Millisecond != 0 {
			t.Fatalf("parseAck(%q) accepted a probation of %v", body, d)
		}
		enc, err := encodeAck(d)
		sameFrame(t, raw, typ, enc, err, d)
	case framePassed, frameServing:
		if parseEmpty(typ, body) != nil {
			return
		}
		sameFrame(t, raw, typ, nil, nil, struct{}{})
	case frameState:
		blobs, err := parseState(body)
		if err != nil {
			return
		}
		if err := checkState(blobs); err != nil {
			t.Fatalf("parseState(%.80q) accepted blobs that do not check: %v", body, err)
		}
		enc, err := encodeState(blobs)
		sameFrame(t, raw, typ, enc, err, blobs)
	case frameConn:
		m, err := parseConn(body)
		if err != nil {
			return
		}
		if m.ID == 0 || !validName(m.Name) || len(m.State) > MaxConnState {
			t.Fatalf("parseConn(%.80q) accepted %+v", body, m)
		}
		enc, err := encodeConn(m)
		sameFrame(t, raw, typ, enc, err, m)
	case frameConnAck:
		id, err := parseConnAck(body)
		if err != nil {
			return
		}
		enc, err := encodeConnAck(id)
		sameFrame(t, raw, typ, enc, err, id)
	case frameConnRefuse:
		m, err := parseConnRefuse(body)
		if err != nil {
			return
		}
		if m.ID == 0 || len(m.Reason) > maxReasonLen || !utf8.ValidString(m.Reason) {
			t.Fatalf("parseConnRefuse(%.80q) accepted %+v", body, m)
		}
		enc, err := encodeConnRefuse(m)
		if reason := body[4:]; len(reason) <= maxReasonLen && utf8.Valid(reason) {
			sameFrame(t, raw, typ, enc, err, m)
		} else if again, err2 := parseConnRefuse(enc); err != nil || err2 != nil || again != m {
			t.Fatalf("conn refusal %+v changed through encodeConnRefuse to %+v (%v, %v)", m, again, err, err2)
		}
	default:
		t.Fatalf("readFrame returned a frame of unknown type %q", typ)
	}
}

// sameFrame checks that body, encoded from v (or failing with err), framed
// as typ gives back raw.
func sameFrame(t *testing.T, raw []byte, typ byte, body []byte, err error, v any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%c frame %+v, accepted, is refused by its encoder: %v", typ, v, err)
	}
	b, err := encodeFrame(typ, body)
	if err != nil {
		t.Fatalf("encodeFrame(%q, %d bytes) of an accepted frame: %v", typ, len(body), err)
	}
	if !bytes.Equal(b, raw) {
		t.Fatalf("%c frame %+v encodes differently from what was accepted:\n got %.200q\nwant %.200q", typ, v, b, raw)
	}
}

// FuzzParseHandoffEnv checks that whatever parseHandoffEnv accepts is in
// range and comes back unchanged through formatHandoffEnv.
func FuzzParseHandoffEnv(f *testing.F) {
	f.Fuzz(func(t *testing.T, v string) {
		fd, ppid, err := parseHandoffEnv(v)
		if err != nil {
			if want := fmt.Sprintf("BATON_HANDOFF=%q: want <fd>:<pid>", v); !strings.Contains(err.Error(), want) {
				t.Fatalf("parseHandoffEnv(%q): error %q does not say %q", v, err, want)
			}
			return
		}
		if fd < 3 || fd > 1<<20 || ppid < 1 {
			t.Fatalf("parseHandoffEnv(%q) accepted fd %d, pid %d", v, fd, ppid)
		}
		kv := formatHandoffEnv(fd, ppid)
		fd2, ppid2, err := parseHandoffEnv(handoffEnvValue(t, kv))
		if err != nil || fd2 != fd || ppid2 != ppid {
			t.Fatalf("parseHandoffEnv(%q) = %d, %d; through formatHandoffEnv (%q) it is %d, %d, %v", v, fd, ppid, kv, fd2, ppid2, err)
		}
	})
}

func stateBody(blobs ...[2]string) string {
	b := u16(uint16(len(blobs)))
	for _, kv := range blobs {
		b += str(kv[0]) + u32(uint32(len(kv[1]))) + kv[1]
	}
	return b
}

func connBody(id uint32, name, state string) string {
	return u32(id) + str(name) + u32(uint32(len(state))) + state
}

func TestParseState(t *testing.T) {
	t.Parallel()
	many := make([][2]string, maxStateBlobs)
	for i := range many {
		many[i] = [2]string{fmt.Sprintf("n%04d", i), ""}
	}
	cases := []struct {
		name string
		body string
		want map[string][]byte
		err  string
	}{
		{"none", stateBody(), map[string][]byte{}, ""},
		{"two", stateBody([2]string{"a", "1"}, [2]string{"b", ""}), map[string][]byte{"a": []byte("1"), "b": {}}, ""},
		{"at the limit", stateBody([2]string{"big", strings.Repeat("x", MaxState)}), map[string][]byte{"big": []byte(strings.Repeat("x", MaxState))}, ""},
		{"most names", stateBody(many...), nil, ""},

		{"empty", "", nil, "proto:V frame of 0 bytes, want 2"},
		{"too many names", u16(maxStateBlobs + 1), nil, "proto:state frame with 1025 blobs exceeds the limit of 1024"},
		{"over the limit", stateBody([2]string{"a", strings.Repeat("x", MaxState-1)}, [2]string{"b", "xy"}), nil, "proto:state blob 1 (\"b\"): value of 2 bytes exceeds the limit of 1"},
		{"out of order", stateBody([2]string{"b", ""}, [2]string{"a", ""}), nil, `proto:state blob 1: name "a" after "b"`},
		{"twice", stateBody([2]string{"a", ""}, [2]string{"a", ""}), nil, `proto:state blob 1: name "a" after "a"`},
		{"empty name", stateBody([2]string{"", "v"}), nil, `proto:state blob 0: bad name ""`},
		{"name with a colon", stateBody([2]string{"a:b", "v"}), nil, `proto:state blob 0: bad name "a:b"`},
		{"name over the limit", u16(1) + str(strings.Repeat("n", maxNameLen+1)), nil, "proto:state blob 0: name of 256 bytes exceeds the limit of 255"},
		{"value overruns", u16(1) + str("a") + u32(5) + "abc", nil, "proto:state blob 0 (\"a\"): value of 5 bytes, but only 3 left"},
		{"value length cut", u16(1) + str("a") + "\x00\x00", nil, "proto:state blob 0 (\"a\"): truncated in the length of its value"},
		{"fewer than counted", u16(2) + str("a") + u32(0), nil, "proto:state blob 1: truncated in the length of its name"},
		{"trailing", stateBody([2]string{"a", "1"}) + "z", nil, "proto:V frame: 1 bytes after the last blob"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseState([]byte(tc.body))
			checkErr(t, fmt.Sprintf("parseState(%.60q)", tc.body), err, tc.err)
			if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseState = %q, want %q", got, tc.want)
			}
			if err == nil {
				// One encoding of a set of blobs: it comes back as it came.
				enc, err := encodeState(got)
				if err != nil || string(enc) != tc.body {
					t.Errorf("encodeState(parseState(body)) = %.60q, %v; want the body back", enc, err)
				}
			}
		})
	}
}

func TestParseConn(t *testing.T) {
	t.Parallel()
	full := strings.Repeat("s", MaxConnState)
	cases := []struct {
		name string
		body string
		want connMsg
		err  string
	}{
		{"plain", connBody(7, "echo", "42"), connMsg{ID: 7, Name: "echo", State: []byte("42")}, ""},
		{"no state", connBody(1<<32-1, "ws", ""), connMsg{ID: 1<<32 - 1, Name: "ws", State: []byte{}}, ""},
		{"state at the limit", connBody(1, "a", full), connMsg{ID: 1, Name: "a", State: []byte(full)}, ""},

		{"empty", "", connMsg{}, "proto:C frame of 0 bytes, want 4"},
		{"id 0", connBody(0, "echo", ""), connMsg{}, "proto:conn with id 0"},
		{"no name", connBody(3, "", ""), connMsg{}, `proto:conn 3: bad name ""`},
		{"name with NUL", connBody(3, "a\x00", ""), connMsg{}, `proto:conn 3: bad name "a\x00"`},
		{"state over the limit", connBody(3, "a", full+"s"), connMsg{}, "proto:conn 3: state of 65537 bytes exceeds the limit of 65536"},
		{"state overruns", u32(3) + str("a") + u32(9) + "abc", connMsg{}, "proto:conn 3: state of 9 bytes, but only 3 left"},
		{"state length missing", u32(3) + str("a"), connMsg{}, "proto:conn 3: truncated in the length of its state"},
		{"name cut", u32(3) + "\x00", connMsg{}, "proto:conn 3: truncated in the length of its name"},
		{"trailing", connBody(3, "a", "") + "!", connMsg{}, "proto:C frame: 1 bytes after the state"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseConn([]byte(tc.body))
			checkErr(t, fmt.Sprintf("parseConn(%.60q)", tc.body), err, tc.err)
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseConn = %+v, want %+v", got, tc.want)
			}
			if err == nil {
				enc, err := encodeConn(got)
				if err != nil || string(enc) != tc.body {
					t.Errorf("encodeConn(parseConn(body)) = %.60q, %v; want the body back", enc, err)
				}
			}
		})
	}
}

func TestParseConnAnswers(t *testing.T) {
	t.Parallel()
	if id, err := parseConnAck([]byte(u32(9))); id != 9 || err != nil {
		t.Errorf("parseConnAck(9) = %d, %v", id, err)
	}
	for _, tc := range []struct{ body, err string }{
		{"", "proto:K frame of 0 bytes, want 4"},
		{u32(0), "proto:conn ack for id 0"},
		{u32(9) + "\x00", "proto:K frame of 5 bytes, want 4"},
	} {
		_, err := parseConnAck([]byte(tc.body))
		checkErr(t, fmt.Sprintf("parseConnAck(%q)", tc.body), err, tc.err)
	}
	for _, tc := range []struct {
		body string
		want connRefuseMsg
		err  string
	}{
		{u32(4) + "queue full", connRefuseMsg{4, "queue full"}, ""},
		{u32(4), connRefuseMsg{4, ""}, ""},
		{u32(4) + "bad \xff", connRefuseMsg{4, "bad \uFFFD"}, ""},
		{u32(4) + strings.Repeat("r", maxReasonLen+9), connRefuseMsg{4, strings.Repeat("r", maxReasonLen)}, ""},
		{"\x00\x00\x01", connRefuseMsg{}, "proto:N frame of 3 bytes, want 4"},
		{u32(0) + "x", connRefuseMsg{}, "proto:conn refusal for id 0"},
	} {
		got, err := parseConnRefuse([]byte(tc.body))
		checkErr(t, fmt.Sprintf("parseConnRefuse(%.40q)", tc.body), err, tc.err)
		if got != tc.want {
			t.Errorf("parseConnRefuse(%.40q) = %+v, want %+v", tc.body, got, tc.want)
		}
	}
}

// The link's encoders refuse what their parsers refuse.
func TestEncodeLinkRefuses(t *testing.T) {
	t.Parallel()
	state := func(blobs map[string][]byte) error { _, err := encodeState(blobs); return err }
	conn := func(m connMsg) error { _, err := encodeConn(m); return err }
	ack := func(id uint32) error { _, err := encodeConnAck(id); return err }
	refuse := func(id uint32) error { _, err := encodeConnRefuse(connRefuseMsg{ID: id}); return err }
	many := make(map[string][]byte)
	for i := range maxStateBlobs + 1 {
		many[fmt.Sprint(i)] = nil
	}
	cases := []struct {
		name string
		err  error
		want string
	}{
		{"state over MaxState", state(map[string][]byte{"a": make([]byte, MaxState/2), "b": make([]byte, MaxState/2+1)}), "proto:state blobs of 524289 bytes together exceed the limit of 524288"},
		{"state names over the limit", state(many), "proto:1025 state blobs exceed the limit of 1024"},
		{"state name empty", state(map[string][]byte{"": nil}), `proto:bad state blob name ""`},
		{"state name too long", state(map[string][]byte{strings.Repeat("n", 256): nil}), "proto:bad state blob name"},
		{"conn id 0", conn(connMsg{Name: "a"}), "proto:conn with id 0"},
		{"conn no name", conn(connMsg{ID: 1}), `proto:conn 1: bad name ""`},
		{"conn state too big", conn(connMsg{ID: 1, Name: "a", State: make([]byte, MaxConnState+1)}), "proto:conn 1: state of 65537 bytes exceeds the limit of 65536"},
		{"ack id 0", ack(0), "proto:conn ack for id 0"},
		{"refusal id 0", refuse(0), "proto:conn refusal for id 0"},
	}
	for _, tc := range cases {
		checkErr(t, tc.name, tc.err, tc.want)
	}
	// The largest state frame fits in a frame.
	big := make(map[string][]byte)
	for i := range maxStateBlobs {
		big[fmt.Sprintf("%0255d", i)] = nil
	}
	big[fmt.Sprintf("%0255d", 0)] = make([]byte, MaxState)
	body, err := encodeState(big)
	if err != nil {
		t.Fatalf("encodeState of the largest state: %v", err)
	}
	if _, err := encodeFrame(frameState, body); err != nil {
		t.Errorf("the largest state frame (%d bytes) does not fit in a frame: %v", len(body), err)
	}
}
