//go:build linux

package baton

import (
	"encoding/hex"
	"strings"
	"testing"
)

// Status files as daemontools 0.76, runit 2.1.2 and s6 2.11 wrote them on
// Debian bookworm, up (a sleep running) and after a down command.
func TestParseSvStatus(t *testing.T) {
	tests := []struct {
		name, hex string
		want      svStatus
	}{
		{"daemontools up", "400000006b01056022 71dd0c 8e230000 00 75", svStatus{daemontools, 0x238e, true}},
		{"daemontools down", "400000006b01056123b97454 00000000 00 64", svStatus{daemontools, 0, false}},
		{"runit up", "400000006b01056022567954 8d230000 00 75 00 01", svStatus{runit, 0x238d, true}},
		{"runit down", "400000006b01056122e41f0c 00000000 00 64 00 00", svStatus{runit, 0, false}},
		{"s6 up", "400000006b01057b2265bcb5 400000006b01057b225405de 000000000000238c 0000 04", svStatus{s6, 0x238c, true}},
		{"s6 down", "400000006b01057c22e6e3f9 400000006b01057c22ebfe63 0000000000000000 000f 08", svStatus{s6, 0, false}},
		// s6 2.12 and later insert the pgid before the wait status.
		{"s6 2.12 up", "400000006b01057b2265bcb5 400000006b01057b225405de 000000000000238c 000000000000238c 0000 04", svStatus{s6, 0x238c, true}},
		{"s6 2.12 down", "400000006b01057c22e6e3f9 400000006b01057c22ebfe63 0000000000000000 0000000000000000 000f 08", svStatus{s6, 0, false}},
		{"s6 paused, want up", "400000006b01057f2351243a 400000006b01057c22ebfe63 00000000000023af 000f 05", svStatus{s6, 0x23af, true}},
	}
	for _, tc := range tests {
		b, err := hex.DecodeString(strings.ReplaceAll(tc.hex, " ", ""))
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseSvStatus(b)
		if err != nil || got != tc.want {
			t.Errorf("%s: got %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
	for _, bad := range []string{"", "00", strings.Repeat("00", 18), strings.Repeat("00", 36)} {
		b, _ := hex.DecodeString(bad)
		if st, err := parseSvStatus(b); err == nil {
			t.Errorf("%q: got %+v, want an error", bad, st)
		}
	}
}

// A socket from systemd is found by what a program may ask for.
func TestAddrKeysActivated(t *testing.T) {
	key := func(e *entry) string {
		var s []string
		for _, k := range addrKeys(e) {
			s = append(s, k.network+" "+k.address)
		}
		return strings.Join(s, ", ")
	}
	tests := []struct {
		meta fdMeta
		want string
	}{
		{fdMeta{Kind: kindListener, Network: "tcp", Actual: "127.0.0.1:8080"}, "tcp 127.0.0.1:8080, tcp4 127.0.0.1:8080"},
		{fdMeta{Kind: kindListener, Network: "tcp", Actual: "[::]:8080"}, "tcp [::]:8080, tcp :8080, tcp6 [::]:8080, tcp6 :8080"},
		{fdMeta{Kind: kindPacket, Network: "udp", Actual: "0.0.0.0:53"}, "udp 0.0.0.0:53, udp :53, udp4 0.0.0.0:53, udp4 :53"},
		{fdMeta{Kind: kindListener, Network: "unix", Actual: "/run/app.sock"}, "unix /run/app.sock"},
		{fdMeta{Kind: kindListener, Network: "unix"}, ""},
	}
	for _, tc := range tests {
		if got := key(&entry{meta: tc.meta, activated: true}); got != tc.want {
			t.Errorf("%+v: keys %q, want %q", tc.meta, got, tc.want)
		}
	}
}

// Whatever a status file holds, the decoder answers without panicking,
// and what it accepts has a sane pid.
// Its length alone tells the supervisor, and the stamps at the start do
// not change what it says.
func FuzzParseSvStatus(f *testing.F) {
	for _, n := range []int{18, 20, 35, 43} {
		b := make([]byte, n)
		f.Add(b)
	}
	for _, h := range []string{
		"400000006b0105602271dd0c8e2300000075",
		"400000006b01056022567954 8d230000 00 75 00 01",
		"400000006b01057b2265bcb5 400000006b01057b225405de 000000000000238c 0000 04",
		"400000006b01057b2265bcb5 400000006b01057b225405de 000000000000238c 000000000000238c 0000 04",
		"400000006b01057c22e6e3f9 400000006b01057c22ebfe63 00000000ffffffff 000f 08",
	} {
		b, err := hex.DecodeString(strings.ReplaceAll(h, " ", ""))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	kinds := map[int]supervisorKind{18: daemontools, 20: runit, 35: s6, 43: s6}
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := parseSvStatus(b)
		if err != nil {
			return
		}
		if st.pid < 0 || st.kind != kinds[len(b)] {
			t.Fatalf("%x: accepted as %+v", b, st)
		}
		stamped := append([]byte(nil), b...)
		for i := range 12 {
			stamped[i] ^= 0xff
		}
		if again, err := parseSvStatus(stamped); err != nil || again != st {
			t.Fatalf("%x: %+v, but with another stamp %+v, %v", b, st, again, err)
		}
	})
}
