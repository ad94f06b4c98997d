//go:build linux || darwin

package baton

import (
	"os"
	"slices"
	"testing"
	"time"
)

// receive refuses a name that an earlier fds frame used: parseFds sees one
// frame at a time, and the registry finds descriptors by name.
func TestReceiveNamesAcrossFrames(t *testing.T) {
	// Not parallel: it counts the process's descriptors.
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fd := int(f.Fd())
	file := func(name string) fdMeta { return fdMeta{Name: name, Kind: kindFile} }
	tcp := fdMeta{Kind: kindListener, Network: "tcp", Address: ":80", Actual: "0.0.0.0:80"}

	cases := []struct {
		name   string
		frames [][]fdMeta
		want   string // in the error; "" for none
		kept   int    // entries returned, for the caller to close on error
	}{
		{"distinct names", [][]fdMeta{{file("a"), file("b")}, {file("c")}}, "", 3},
		{"unnamed sockets on one address", [][]fdMeta{{tcp}, {tcp, file("a")}}, "", 3},
		{"a name again in the next frame", [][]fdMeta{{file("a"), file("b")}, {file("a")}}, `proto:descriptor 2: name "a" already used by descriptor 0`, 2},
		{"a name again two frames on", [][]fdMeta{{file("a")}, {tcp}, {tcp, file("b"), file("a")}}, `proto:descriptor 4: name "a" already used by descriptor 0`, 2},
		{"a name twice in one frame", [][]fdMeta{{file("a")}, {file("b"), file("b")}}, `proto:descriptor 1: name "b" used twice`, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := socketPair(t)
			before := openFds()
			n := 0
			for _, metas := range tc.frames {
				n += len(metas)
			}
			// Small frames: the socket buffer takes them all before
			// receive reads them.
			if err := sendFrame(a, helloFrame(t, helloMsg{Version: protocolVersion, Generation: 2, PID: os.Getpid(), Fds: n}), nil); err != nil {
				t.Fatal(err)
			}
			for _, metas := range tc.frames {
				// Framed by hand: encodeFds refuses a name twice in one frame.
				body := fdsBody(uint16(len(metas)))
				for _, m := range metas {
					body += metaBody(m.Kind.code(), m.Name, m.Network, m.Address, m.Actual)
				}
				if err := sendFrame(a, frame(frameFds, body), slices.Repeat([]int{fd}, len(metas))); err != nil {
					t.Fatal(err)
				}
			}
			// The state frame ends every handoff (none refuses it
			// here: after a refused frame, it stays unread).
			state, err := encodeState(map[string][]byte{"k": []byte("v")})
			if err != nil {
				t.Fatal(err)
			}
			if err := sendFrame(a, frame(frameState, string(state)), nil); err != nil {
				t.Fatal(err)
			}
			p := &parent{pid: os.Getpid(), conn: b, ack: make(chan struct{}), gone: make(chan struct{})}
			entries, err := p.receive(10 * time.Second)
			checkErr(t, "receive", err, tc.want)
			if err == nil && string(p.state["k"]) != "v" {
				t.Errorf("receive took the state %q, want k=v", p.state)
			}
			if len(entries) != tc.kept {
				t.Errorf("receive returned %d entries, want %d", len(entries), tc.kept)
			}
			i := 0
			for _, metas := range tc.frames {
				for _, m := range metas {
					if i < len(entries) && entries[i].meta != m {
						t.Errorf("entry %d describes %+v, want %+v", i, entries[i].meta, m)
					}
					i++
				}
			}
			for _, e := range entries {
				if same := sameFile(t, e.fd, fd); !e.inherited || !same {
					t.Errorf("entry %+v: inherited %v, same file %v; want an inherited copy of what was sent", e.meta, e.inherited, same)
				}
				closeFds([]int{e.fd})
			}
			// Those of the refused frame, and any after it still in the
			// socket, are not left open: a and b still are.
			a.Close()
			b.Close()
			if after := openFds(); before >= 0 && after != before-2 {
				t.Errorf("%d descriptors open before, %d after receive, the entries and the socket closed; want %d", before, after, before-2)
			}
		})
	}
}
