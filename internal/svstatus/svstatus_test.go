package svstatus

import (
	"encoding/hex"
	"strings"
	"testing"
)

// unhex decodes "40 00 6b …", the way od -An -tx1 prints a file.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatalf("bad capture %q: %v", s, err)
	}
	return b
}

// Each capture is a supervise/status file written by the real tool on
// Debian bookworm (daemontools 0.76, runit 2.1.2, s6 2.11.3) for a
// "sleep 1000" service, with what svstat, "sv status" or s6-svstat said
// about it at the same moment. Stamps are checked apart.
func TestParseCaptures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		tool    string // the tool's own view
		capture string
		want    Status
	}{
		{"up (pid 12693) 1 seconds",
			"40 00 00 00 6b 01 06 21 07 79 e3 14 95 31 00 00 00 75",
			Status{Kind: Daemontools, PID: 12693, Up: true, WantUp: true}},
		{"up (pid 12693) 1 seconds, paused",
			"40 00 00 00 6b 01 06 21 07 79 e3 14 95 31 00 00 01 75",
			Status{Kind: Daemontools, PID: 12693, Up: true, WantUp: true, Paused: true}},
		{"up (pid 12923) 1 seconds, want down",
			"40 00 00 00 6b 01 06 25 17 eb aa 34 7b 32 00 00 00 64",
			Status{Kind: Daemontools, PID: 12923, Up: true}},
		{"down 0 seconds, normally up",
			"40 00 00 00 6b 01 06 22 22 a1 9f 9c 00 00 00 00 00 64",
			Status{Kind: Daemontools}},

		{"run: (pid 12695) 1s",
			"40 00 00 00 6b 01 06 21 07 9c 38 24 97 31 00 00 00 75 00 01",
			Status{Kind: Runit, PID: 12695, Up: true, WantUp: true}},
		{"run: (pid 12695) 1s, paused",
			"40 00 00 00 6b 01 06 21 07 9c 38 24 97 31 00 00 01 75 00 01",
			Status{Kind: Runit, PID: 12695, Up: true, WantUp: true, Paused: true}},
		{"run: (pid 12925) 1s, want down, got TERM",
			"40 00 00 00 6b 01 06 25 17 d8 87 c4 7d 32 00 00 00 64 01 01",
			Status{Kind: Runit, PID: 12925, Up: true}},
		{"down: 0s, normally up",
			"40 00 00 00 6b 01 06 22 22 b5 fa 8c 00 00 00 00 00 64 00 00",
			Status{Kind: Runit}},
		// Built from the layout: ./finish (pid 0x2401) runs.
		{"finish: (pid 9217) 0s, normally up",
			"40 00 00 00 6b 01 06 22 22 b5 fa 8c 01 24 00 00 00 75 00 02",
			Status{Kind: Runit, PID: 0x2401, WantUp: true, Finishing: true}},

		{"up (pid 12694) 1 seconds",
			"40 00 00 00 6b 01 06 3c 07 a5 20 80 40 00 00 00 6b 01 06 3c 07 84 ae 81" +
				" 00 00 00 00 00 00 31 96 00 00 04",
			Status{Kind: S6, PID: 12694, Up: true, WantUp: true}},
		// A service directory with notification-fd, running the demo
		// server, which says ready on it.
		{"up (pid 27586) 1 seconds, ready 1 seconds",
			"40 00 00 00 6b 01 07 b5 1a 44 82 cc 40 00 00 00 6b 01 07 b5 1a 80 e6 3e" +
				" 00 00 00 00 00 00 6b c2 00 00 0c",
			Status{Kind: S6, PID: 27586, Up: true, WantUp: true, Ready: true}},
		{"up (pid 12694) 1 seconds, paused",
			"40 00 00 00 6b 01 06 3c 07 a5 20 80 40 00 00 00 6b 01 06 3c 07 84 ae 81" +
				" 00 00 00 00 00 00 31 96 00 00 05",
			Status{Kind: S6, PID: 12694, Up: true, WantUp: true, Paused: true}},
		{"up (pid 12924) 1 seconds, want down",
			"40 00 00 00 6b 01 06 40 17 ee 36 0f 40 00 00 00 6b 01 06 40 17 d4 54 91" +
				" 00 00 00 00 00 00 32 7c 00 00 00",
			Status{Kind: S6, PID: 12924, Up: true}},
		{"down (signal SIGKILL) 0 seconds, normally up (./finish running as pid 12968)",
			"40 00 00 00 6b 01 06 41 36 77 1f ed 40 00 00 00 6b 01 06 40 17 d4 54 91" +
				" 00 00 00 00 00 00 32 a8 00 09 02",
			Status{Kind: S6, PID: 12968, Finishing: true}},
		{"down (signal SIGTERM) 0 seconds, normally up, ready 0 seconds",
			"40 00 00 00 6b 01 06 3d 22 b6 8d fb 40 00 00 00 6b 01 06 3d 22 bc 7e d3" +
				" 00 00 00 00 00 00 00 00 00 0f 08",
			Status{Kind: S6}},
		// s6 2.12 and newer: the 2.11 "up" capture with a pgid inserted
		// at [32:40], laid out as s6_svstatus_pack.c writes it.
		{"up (pid 12694), s6 2.12 layout",
			"40 00 00 00 6b 01 06 3c 07 a5 20 80 40 00 00 00 6b 01 06 3c 07 84 ae 81" +
				" 00 00 00 00 00 00 31 96 00 00 00 00 00 00 31 96 00 00 04",
			Status{Kind: S6, PID: 12694, Up: true, WantUp: true}},
		{"down, s6 2.12 layout",
			"40 00 00 00 6b 01 05 7c 22 e6 e3 f9 40 00 00 00 6b 01 05 7c 22 eb fe 63" +
				" 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 0f 08",
			Status{Kind: S6}},
	}
	for _, tt := range tests {
		b := unhex(t, tt.capture)
		got, err := Parse(b)
		if err != nil {
			t.Errorf("%s: Parse(%s): %v", tt.tool, tt.capture, err)
			continue
		}
		if Stamp(b[:12]) != got.Stamp {
			t.Errorf("%s: Stamp = %x; want %x", tt.tool, got.Stamp, b[:12])
		}
		got.Stamp = Stamp{}
		if got != tt.want {
			t.Errorf("%s: Parse(%s) = %+v; want %+v", tt.tool, tt.capture, got, tt.want)
		}
		if again, err := ParseKind(tt.want.Kind, b); err != nil || again.PID != tt.want.PID {
			t.Errorf("%s: ParseKind(%s) = %+v, %v; want what Parse said", tt.tool, tt.want.Kind, again, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	dtUp := "40 00 00 00 6b 01 06 21 07 79 e3 14 95 31 00 00 00 75"
	s6Up := "40 00 00 00 6b 01 06 3c 07 a5 20 80 40 00 00 00 6b 01 06 3c 07 84 ae 81"
	tests := []struct {
		name    string
		kind    Kind // "" for Parse
		capture string
		errHas  string
	}{
		{"empty", "", "", "0 bytes is not daemontools'"},
		{"one byte", "", "00", "1 bytes"},
		{"36 bytes", "", strings.Repeat("00 ", 36), "36 bytes"},
		{"empty as daemontools", Daemontools, "", "0 bytes"},
		{"runit status read as daemontools", Daemontools, dtUp + " 00 01", "20 bytes; want 18"},
		{"daemontools status read as runit", Runit, dtUp, "18 bytes; want 20"},
		{"daemontools status read as s6", S6, dtUp, "18 bytes; want 35"},
		{"zeros", "", strings.Repeat("00 ", 18), "neither 'u' nor 'd'"},
		{"bad want byte", Daemontools, "40 00 00 00 6b 01 06 21 07 79 e3 14 95 31 00 00 00 78", "neither 'u' nor 'd'"},
		{"daemontools pid out of range", "", "40 00 00 00 6b 01 06 21 07 79 e3 14 95 31 40 00 00 75", "out of range"},
		{"s6 pid out of range", S6, s6Up + " 00 00 00 01 00 00 31 96 00 00 04", "out of range"},
		{"s6 pid of 32 bits", "", s6Up + " 00 00 00 00 ff ff ff ff 00 0f 08", "out of range"},
		{"runit state out of range", Runit, dtUp + " 00 03", "state byte 3"},
		{"runit run without a pid", Runit, "40 00 00 00 6b 01 06 21 07 9c 38 24 00 00 00 00 00 75 00 01", "without a pid"},
		{"unknown kind", "systemd", dtUp, "unknown supervisor kind"},
	}
	for _, tt := range tests {
		var got Status
		var err error
		if tt.kind == "" {
			got, err = Parse(unhex(t, tt.capture))
		} else {
			got, err = ParseKind(tt.kind, unhex(t, tt.capture))
		}
		if err == nil || !strings.Contains(err.Error(), tt.errHas) {
			t.Errorf("%s: = %+v, %v; want an error containing %q", tt.name, got, err, tt.errHas)
		}
	}
}

// FuzzParseKind: no input panics; whatever decodes is consistent (a pid
// when up, ready only when up, the kind its length tells), Parse agrees
// with ParseKind, and the stamp changes nothing else.
func FuzzParseKind(f *testing.F) {
	f.Add("daemontools", []byte("@\x00\x00\x00k\x01\x06!\x07y\xe3\x14\x951\x00\x00\x00u"))
	f.Add("runit", []byte("@\x00\x00\x00k\x01\x06!\x07\x9c8$\x971\x00\x00\x00u\x00\x01"))
	f.Add("runit", []byte("@\x00\x00\x00k\x01\x06!\x07\x9c8$\x971\x00\x00\x00u\x00\x02"))
	f.Add("s6", make([]byte, s6Len))
	f.Add("s6", make([]byte, s6PgidLen))
	f.Add("", []byte("@\x00\x00\x00k\x01\x06<\x07\xa5 \x80@\x00\x00\x00k\x01\x06<\x07\x84\xae\x81\x00\x00\x00\x00\x00\x001\x96\x00\x00\x0c"))
	f.Fuzz(func(t *testing.T, kind string, b []byte) {
		s, err := ParseKind(Kind(kind), b)
		p, perr := Parse(b)
		if err == nil && (perr != nil || p != s) {
			t.Fatalf("ParseKind(%s, %x) = %+v, but Parse = %+v, %v", kind, b, s, p, perr)
		}
		if perr != nil {
			return
		}
		if p.Kind != KindOf(len(b)) || p.PID < 0 || p.PID > pidMax || p.Up && p.PID == 0 || p.Ready && !p.Up || p.Up && p.Finishing {
			t.Fatalf("Parse(%x) = %+v: inconsistent", b, p)
		}
		if Stamp(b[:12]) != p.Stamp {
			t.Fatalf("Parse(%x).Stamp = %x", b, p.Stamp)
		}
		stamped := append([]byte(nil), b...)
		for i := range 12 {
			stamped[i] ^= 0xff
		}
		again, err := Parse(stamped)
		again.Stamp = p.Stamp
		if err != nil || again != p {
			t.Fatalf("Parse(%x) = %+v, but with another stamp %+v, %v", b, p, again, err)
		}
	})
}
