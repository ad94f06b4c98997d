//go:build linux

package baton

import (
	"strings"
	"testing"
)

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
