package baton

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
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
		{"ack", header('A', 2), 'A', 2, ""},
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

func TestReadFrame(t *testing.T) {
	t.Parallel()
	hello := frame('H', `{"version":1,"generation":2,"pid":10,"fds":1}`)
	fds := frame('F', `[{"kind":"file","name":"f"}]`)
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
			stream:   bytes.Join([][]byte{hello, fds, frame('R', `{"pid":3}`), frame('A', `{}`)}, nil),
			frames:   []want{{'H', string(hello[5:])}, {'F', string(fds[5:])}, {'R', `{"pid":3}`}, {'A', `{}`}},
			sentinel: io.EOF,
		},
		{name: "short header", stream: []byte("H\x00\x00"), sentinel: io.ErrUnexpectedEOF},
		{name: "short header after a frame", stream: append(bytes.Clone(hello), 'F', 0), frames: []want{{'H', string(hello[5:])}}, sentinel: io.ErrUnexpectedEOF},
		{name: "header without body", stream: header('R', 9), sentinel: io.ErrUnexpectedEOF},
		{name: "truncated body", stream: hello[:len(hello)-1], sentinel: io.ErrUnexpectedEOF},
		{name: "unknown type", stream: frame('?', "{}"), err: "proto:unknown frame type '?'", left: 2},
		{name: "body over the limit", stream: append(header('F', maxFrameBody+1), "[]"...), err: "proto:F frame of 1048577 bytes exceeds the limit of 1048576", left: 2},
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
	stream := append(frame('H', `{"version":1}`), frame('A', `{}`)...)
	r := iotest.OneByteReader(bytes.NewReader(stream))
	for _, want := range []string{`{"version":1}`, `{}`} {
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
	half := io.MultiReader(bytes.NewReader(frame('R', `{"pid":1}`)[:7]), iotest.ErrReader(boom))
	if _, _, err := readFrame(half); err != boom {
		t.Errorf("readFrame(reader failing mid-body with %v) = %v; want that error", boom, err)
	}
}

func TestEncodeFrame(t *testing.T) {
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

	roundTrip := func(typ byte, v any) []byte {
		t.Helper()
		b, err := encodeFrame(typ, v)
		if err != nil {
			t.Fatalf("encodeFrame(%q, %+v): %v", typ, v, err)
		}
		r := bytes.NewReader(b)
		gotTyp, body, err := readFrame(r)
		if err != nil || gotTyp != typ || r.Len() != 0 {
			t.Fatalf("readFrame(encodeFrame(%q, %+v)) = %q, %v with %d bytes left; want %q, nil, 0", typ, v, gotTyp, err, r.Len(), typ)
		}
		return body
	}
	if got, err := parseHello(roundTrip(frameHello, hello)); err != nil || got != hello {
		t.Errorf("hello round trip: %+v, %v; want %+v", got, err, hello)
	}
	if got, err := parseFds(roundTrip(frameFds, metas), len(metas)); err != nil || !reflect.DeepEqual(got, metas) {
		t.Errorf("fds round trip: %+v, %v; want %+v", got, err, metas)
	}
	if got, err := parseReady(roundTrip(frameReady, ready)); err != nil || got != ready {
		t.Errorf("ready round trip: %+v, %v; want %+v", got, err, ready)
	}
	if got, err := parseAbort(roundTrip(frameAbort, abort)); err != nil || got != abort {
		t.Errorf("abort round trip: %+v, %v; want %+v", got, err, abort)
	}
	if body := roundTrip(frameAck, struct{}{}); string(body) != "{}" {
		t.Errorf("ack body %q, want {}", body)
	}
	// Names and addresses are optional in the metadata and stay out of
	// the JSON when empty.
	if body := roundTrip(frameFds, []fdMeta{{Name: "f", Kind: kindFile}}); string(body) != `[{"name":"f","kind":"file"}]` {
		t.Errorf("fds body %s, want the empty fields left out", body)
	}

	if _, err := encodeFrame(frameAbort, abortMsg{Reason: strings.Repeat("x", maxFrameBody)}); err == nil ||
		!strings.Contains(err.Error(), "X frame of 1048589 bytes exceeds the limit of 1048576") {
		t.Errorf("encodeFrame of a body over the limit: %v; want it refused with the size and the limit", err)
	}
	if _, err := encodeFrame(frameReady, make(chan int)); err == nil {
		t.Errorf("encodeFrame of a channel: no error, want the JSON error")
	}
}

func TestParseHello(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body string
		want helloMsg
		err  string
	}{
		{`{"version":1,"generation":2,"pid":100,"fds":3}`, helloMsg{1, 2, 100, 3}, ""},
		{`{"version":1,"generation":1,"pid":1,"fds":0}`, helloMsg{1, 1, 1, 0}, ""},
		{`{"version":1,"generation":9,"pid":7,"fds":1048576}`, helloMsg{1, 9, 7, maxFds}, ""},
		// A later incumbent may say more; this one ignores what it does not know.
		{`{"version":1,"generation":2,"pid":100,"fds":3,"features":["x"],"extra":{"a":null}}`, helloMsg{1, 2, 100, 3}, ""},
		{`{"version":99,"generation":2,"pid":100,"fds":3}`, helloMsg{}, "proto:incumbent speaks version 99, this binary speaks 1"},
		{`{"generation":2,"pid":100,"fds":3}`, helloMsg{}, "proto:incumbent speaks version 0"},
		{`{"version":1,"generation":0,"pid":100,"fds":3}`, helloMsg{}, "proto:bad generation 0"},
		{`{"version":1,"generation":-4,"pid":100,"fds":3}`, helloMsg{}, "proto:bad generation -4"},
		{`{"version":1,"generation":2,"pid":0,"fds":3}`, helloMsg{}, "proto:bad incumbent pid 0"},
		{`{"version":1,"generation":2,"pid":-1,"fds":3}`, helloMsg{}, "proto:bad incumbent pid -1"},
		{`{"version":1,"generation":2,"pid":100,"fds":-1}`, helloMsg{}, "proto:bad descriptor count -1"},
		{`{"version":1,"generation":2,"pid":100,"fds":1048577}`, helloMsg{}, "proto:bad descriptor count 1048577"},
		{`{"version":1,"generation":2,"pid":100,"fds":1.5}`, helloMsg{}, "proto:H frame: json: cannot unmarshal number 1.5"},
		{`{"version":1,"generation":1e30,"pid":100,"fds":1}`, helloMsg{}, "proto:H frame: json: cannot unmarshal number 1e30"},
		{`{"version":"1","generation":2,"pid":100,"fds":3}`, helloMsg{}, "proto:H frame: json: cannot unmarshal string"},
		{`[1,2,100,3]`, helloMsg{}, "proto:H frame: json: cannot unmarshal array"},
		{`null`, helloMsg{}, "proto:incumbent speaks version 0"},
		{`hello`, helloMsg{}, "proto:H frame: invalid character 'h'"},
		{``, helloMsg{}, "proto:H frame: unexpected end of JSON input"},
		{`{"version":1,"generation":2,"pid":100,"fds":3}{}`, helloMsg{}, "proto:H frame: invalid character '{' after top-level value"},
	}
	for _, tc := range cases {
		got, err := parseHello([]byte(tc.body))
		call := fmt.Sprintf("parseHello(%s)", tc.body)
		checkErr(t, call, err, tc.err)
		if err == nil && got != tc.want {
			t.Errorf("%s = %+v, want %+v", call, got, tc.want)
		}
	}
}

func TestParseFds(t *testing.T) {
	t.Parallel()
	listener := `{"kind":"listener","network":"tcp","address":"127.0.0.1:0","actual":"127.0.0.1:40000"}`
	file := `{"name":"data","kind":"file"}`
	many := func(n int) string { return "[" + strings.TrimSuffix(strings.Repeat(listener+",", n), ",") + "]" }
	meta := func(fields string) string { return "[{" + fields + "}]" }
	long := func(n int) string { return strings.Repeat("a", n) }

	cases := []struct {
		name string
		body string
		nfds int
		want int // descriptors described, if no error
		err  string
	}{
		{"one listener", "[" + listener + "]", 1, 1, ""},
		{"every kind", `[` + listener + `,` + file + `,
			{"kind":"packet","network":"udp","address":":53","actual":"[::]:53"},
			{"name":"peer","kind":"conn","network":"unix","actual":"/run/a.sock"},
			{"kind":"listener","network":"unix","address":"@abstract"}]`, 5, 5, ""},
		{"unknown fields", `[{"name":"data","kind":"file","mode":"0644"}]`, 1, 1, ""},
		{"the most in one frame", many(maxFdsPerFrame), maxFdsPerFrame, maxFdsPerFrame, ""},

		{"more metadata than descriptors", many(2), 1, 0, "proto:fds frame describes 2 descriptors but carried 1"},
		{"more descriptors than metadata", many(1), 3, 0, "proto:fds frame describes 1 descriptors but carried 3"},
		{"metadata without descriptors", many(1), 0, 0, "proto:fds frame describes 1 descriptors but carried 0"},
		{"empty", `[]`, 0, 0, "proto:fds frame with 0 descriptors (want 1 to 128)"},
		{"null", `null`, 0, 0, "proto:fds frame with 0 descriptors (want 1 to 128)"},
		{"too many in one frame", many(maxFdsPerFrame + 1), maxFdsPerFrame + 1, 0, "proto:fds frame with 129 descriptors (want 1 to 128)"},

		{"unknown kind", meta(`"kind":"socket","network":"tcp"`), 1, 0, `proto:descriptor 0: unknown kind "socket"`},
		{"no kind", meta(`"network":"tcp","address":":80"`), 1, 0, `proto:descriptor 0: unknown kind ""`},
		{"kind in capitals", meta(`"kind":"LISTENER","network":"tcp"`), 1, 0, `unknown kind "LISTENER"`},
		{"bad second descriptor", "[" + listener + `,{"kind":"pipe"}]`, 2, 0, `proto:descriptor 1: unknown kind "pipe"`},
		{"file without name", meta(`"kind":"file"`), 1, 0, "proto:descriptor 0: file without a name"},
		{"listener with neither name nor network", meta(`"kind":"listener","address":":80"`), 1, 0, "proto:descriptor 0: listener with neither name nor network"},
		{"conn with neither name nor network", meta(`"kind":"conn"`), 1, 0, "conn with neither name nor network"},
		{"named listener without network", meta(`"name":"l","kind":"listener"`), 1, 1, ""},

		{"listener on tcp6", meta(`"kind":"listener","network":"tcp6"`), 1, 1, ""},
		{"listener on unixpacket", meta(`"kind":"listener","network":"unixpacket"`), 1, 1, ""},
		{"listener on udp", meta(`"kind":"listener","network":"udp"`), 1, 0, `proto:descriptor 0: listener on unknown network "udp"`},
		{"listener on unixgram", meta(`"kind":"listener","network":"unixgram"`), 1, 0, `network "unixgram"`},
		{"packet on udp4", meta(`"kind":"packet","network":"udp4"`), 1, 1, ""},
		{"packet on unixgram", meta(`"kind":"packet","network":"unixgram"`), 1, 1, ""},
		{"packet on tcp", meta(`"kind":"packet","network":"tcp"`), 1, 0, `proto:descriptor 0: packet on unknown network "tcp"`},
		{"packet on unix", meta(`"kind":"packet","network":"unix"`), 1, 0, `network "unix"`},
		{"conn on tcp", meta(`"kind":"conn","network":"tcp"`), 1, 1, ""},
		{"conn on udp6", meta(`"kind":"conn","network":"udp6"`), 1, 1, ""},
		{"conn on unixgram", meta(`"kind":"conn","network":"unixgram"`), 1, 1, ""},
		{"conn on ip", meta(`"kind":"conn","network":"ip4:icmp"`), 1, 0, `proto:descriptor 0: conn on unknown network "ip4:icmp"`},
		{"named conn on bad network", meta(`"name":"c","kind":"conn","network":"sctp"`), 1, 0, `network "sctp"`},

		{"name at the limit", meta(`"name":"` + long(maxNameLen) + `","kind":"file"`), 1, 1, ""},
		{"name over the limit", meta(`"name":"` + long(maxNameLen+1) + `","kind":"file"`), 1, 0, "proto:descriptor 0: name of 256 bytes"},
		{"address at the limit", meta(`"kind":"listener","network":"unix","address":"` + long(maxAddressLen) + `"`), 1, 1, ""},
		{"address over the limit", meta(`"kind":"listener","network":"unix","address":"` + long(maxAddressLen+1) + `"`), 1, 0, "proto:descriptor 0: address too long"},
		{"actual over the limit", meta(`"kind":"listener","network":"unix","actual":"` + long(maxAddressLen+1) + `"`), 1, 0, "proto:descriptor 0: address too long"},

		{"not JSON", `[listener]`, 1, 0, "proto:F frame: invalid character 'l'"},
		{"object, not array", listener, 1, 0, "proto:F frame: json: cannot unmarshal object"},
		{"kind is a number", `[{"kind":1}]`, 1, 0, "proto:F frame: json: cannot unmarshal number"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseFds([]byte(tc.body), tc.nfds)
			call := fmt.Sprintf("parseFds(%.80s, %d)", tc.body, tc.nfds)
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

func TestParseReady(t *testing.T) {
	t.Parallel()
	cases := []struct {
		body string
		pid  int
		err  string
	}{
		{`{"pid":4242}`, 4242, ""},
		{`{"pid":1,"note":"warm"}`, 1, ""},
		{`{"pid":0}`, 0, "proto:ready from bad pid 0"},
		{`{"pid":-7}`, 0, "proto:ready from bad pid -7"},
		{`{}`, 0, "proto:ready from bad pid 0"},
		{`{"pid":"4242"}`, 0, "proto:R frame: json: cannot unmarshal string"},
		{`{x}`, 0, "proto:R frame: invalid character 'x'"},
	}
	for _, tc := range cases {
		got, err := parseReady([]byte(tc.body))
		call := fmt.Sprintf("parseReady(%s)", tc.body)
		checkErr(t, call, err, tc.err)
		if err == nil && got.PID != tc.pid {
			t.Errorf("%s = %+v, want pid %d", call, got, tc.pid)
		}
	}
}

func TestParseAbort(t *testing.T) {
	t.Parallel()
	reason := func(s string) string { b, _ := json.Marshal(abortMsg{Reason: s}); return string(b) }
	cases := []struct {
		name string
		body string
		want string
		err  string
	}{
		{"reason", `{"reason":"listen tcp :80: permission denied"}`, "listen tcp :80: permission denied", ""},
		{"no reason", `{}`, "", ""},
		{"unknown fields", `{"reason":"x","code":3}`, "x", ""},
		{"at the limit", reason(strings.Repeat("r", maxReasonLen)), strings.Repeat("r", maxReasonLen), ""},
		{"long reason is cut", reason(strings.Repeat("r", 3*maxReasonLen)), strings.Repeat("r", maxReasonLen), ""},
		// A cut must not split a character: the reason ends up in errors
		// and logs, and a torn rune is invalid UTF-8 there.
		{"cut between characters", reason(strings.Repeat("r", maxReasonLen-1) + "ééé"), strings.Repeat("r", maxReasonLen-1), ""},
		{"reason is a number", `{"reason":3}`, "", "proto:X frame: json: cannot unmarshal number"},
		{"not JSON", `killed`, "", "proto:X frame: invalid character 'k'"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseAbort([]byte(tc.body))
			call := fmt.Sprintf("parseAbort(%.60s…)", tc.body)
			checkErr(t, call, err, tc.err)
			if err != nil {
				return
			}
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
			if end := len(stream) - r.Len(); end != start+frameHeaderLen+len(body) {
				t.Fatalf("frame %d of %d body bytes: read bytes %d to %d of the stream; want up to %d", i, len(body), start, end, start+frameHeaderLen+len(body))
			}
			checkFrame(t, typ, body)
		}
	})
}

// checkFrame parses one frame. Whatever the parser accepts must satisfy the
// protocol's limits and survive encodeFrame and the parser again unchanged.
func checkFrame(t *testing.T, typ byte, body []byte) {
	switch typ {
	case frameHello:
		m, err := parseHello(body)
		if err != nil {
			return
		}
		if m.Version != protocolVersion || m.Generation < 1 || m.PID < 1 || m.Fds < 0 || m.Fds > maxFds {
			t.Fatalf("parseHello(%q) accepted %+v", body, m)
		}
		reparse(t, typ, m, parseHello)
	case frameFds:
		// The stream carries no descriptors: pretend the frame came with
		// as many as it describes.
		var raw []json.RawMessage
		json.Unmarshal(body, &raw)
		metas, err := parseFds(body, len(raw))
		if err != nil {
			return
		}
		if len(metas) < 1 || len(metas) > maxFdsPerFrame {
			t.Fatalf("parseFds(%q, %d) accepted %d descriptors", body, len(raw), len(metas))
		}
		for i, m := range metas {
			if err := m.validate(); err != nil {
				t.Fatalf("parseFds(%q) accepted descriptor %d (%+v), which does not validate: %v", body, i, m, err)
			}
		}
		if _, err := parseFds(body, len(metas)+1); err == nil {
			t.Fatalf("parseFds(%q, %d) accepted metadata for %d descriptors", body, len(metas)+1, len(metas))
		}
		reparse(t, typ, metas, func(b []byte) ([]fdMeta, error) { return parseFds(b, len(metas)) })
	case frameReady:
		m, err := parseReady(body)
		if err != nil {
			return
		}
		if m.PID < 1 {
			t.Fatalf("parseReady(%q) accepted %+v", body, m)
		}
		reparse(t, typ, m, parseReady)
	case frameAbort:
		m, err := parseAbort(body)
		if err != nil {
			return
		}
		if len(m.Reason) > maxReasonLen || !utf8.ValidString(m.Reason) {
			t.Fatalf("parseAbort(%.80q) accepted a reason of %d bytes ending %q; want at most %d bytes of valid UTF-8",
				body, len(m.Reason), tail(m.Reason), maxReasonLen)
		}
		reparse(t, typ, m, parseAbort)
	case frameAck:
		// The body carries nothing; the successor does not parse it.
	default:
		t.Fatalf("readFrame returned a frame of unknown type %q", typ)
	}
}

// reparse encodes v as a frame of typ, reads it back and parses it with
// parse: the result must equal v.
func reparse[T any](t *testing.T, typ byte, v T, parse func([]byte) (T, error)) {
	t.Helper()
	b, err := encodeFrame(typ, v)
	if err != nil {
		t.Fatalf("encodeFrame(%q, %+v) of an accepted frame: %v", typ, v, err)
	}
	r := bytes.NewReader(b)
	gotTyp, body, err := readFrame(r)
	if err != nil || gotTyp != typ || r.Len() != 0 {
		t.Fatalf("readFrame(encodeFrame(%q, %+v)) = %q, %v, %d bytes left", typ, v, gotTyp, err, r.Len())
	}
	got, err := parse(body)
	if err != nil {
		t.Fatalf("%c frame %+v, accepted once, is refused after encodeFrame: %v", typ, v, err)
	}
	if !reflect.DeepEqual(got, v) {
		t.Fatalf("%c frame changed through encodeFrame:\n got %+v\nwant %+v", typ, got, v)
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
