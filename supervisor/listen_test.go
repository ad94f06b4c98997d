package supervisor

import (
	"strings"
	"testing"
)

func TestParseListen(t *testing.T) {
	t.Parallel()
	good := []struct {
		in   string
		want ListenSpec
	}{
		{"tcp://127.0.0.1:8080", ListenSpec{"", "tcp", "127.0.0.1:8080"}},
		{"web=tcp://:8080", ListenSpec{"web", "tcp", ":8080"}},
		{"tcp6://[::1]:0", ListenSpec{"", "tcp6", "[::1]:0"}},
		{"dns=udp4://0.0.0.0:53", ListenSpec{"dns", "udp4", "0.0.0.0:53"}},
		{"unix:///run/app.sock", ListenSpec{"", "unix", "/run/app.sock"}},
		{"a.b-c_1=unix://@abstract", ListenSpec{"a.b-c_1", "unix", "@abstract"}},
		{"unix://rel/a=b.sock", ListenSpec{"", "unix", "rel/a=b.sock"}},
		{"tcp://localhost:65535", ListenSpec{"", "tcp", "localhost:65535"}},
	}
	for _, tc := range good {
		got, err := ParseListen(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseListen(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
			continue
		}
		if back, err := ParseListen(got.String()); err != nil || back != got {
			t.Errorf("ParseListen(%q.String() = %q) = %+v, %v; want it back", tc.in, got.String(), back, err)
		}
	}
	bad := []struct{ in, want string }{
		{"", "empty"},
		{"127.0.0.1:8080", "want SCHEME://ADDRESS"},
		{"http://:80", `unknown scheme "http"`},
		{"tcp://:99999", "bad port"},
		{"tcp://:08080", "bad port"},
		{"tcp://:http", "bad port"},
		{"tcp://127.0.0.1", "missing port"},
		{"=tcp://:80", "empty name"},
		{"w:b=tcp://:80", "bad name"},
		{"unix://", "want unix://"},
		{"unix://@", "want unix://"},
		{"unix:///" + strings.Repeat("x", 200), "at most 107"},
		{strings.Repeat("n", 256) + "=tcp://:1", "longer than 255"},
	}
	for _, tc := range bad {
		if got, err := ParseListen(tc.in); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseListen(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseListen(f *testing.F) {
	for _, s := range []string{"tcp://127.0.0.1:8080", "web=tcp://:8080", "udp6://[::]:53", "unix:///a", "unix://@x", "x=y=tcp://:1", "tcp://[::1%eth0]:1", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		spec, err := ParseListen(s)
		if err != nil {
			return
		}
		if spec.Network == "" || spec.Address == "" {
			t.Fatalf("ParseListen(%q) = %+v: accepted without network or address", s, spec)
		}
		back, err := ParseListen(spec.String())
		if err != nil || back != spec {
			t.Fatalf("ParseListen(%q) = %+v, whose String %q parses as %+v, %v", s, spec, spec.String(), back, err)
		}
	})
}
