package environ

import (
	"slices"
	"strings"
	"testing"
)

func TestWithout(t *testing.T) {
	t.Parallel()
	env := []string{"PATH=/bin", "LISTEN_FDS=2", "LISTEN_FDS_X=1", "listen_fds=3", "WATCHDOG_PID=7", "NOVALUE", "A=b=c", "=x", "LISTEN_FDS=4"}
	for _, tc := range []struct {
		names []string
		want  []string
	}{
		{nil, env},
		{[]string{"LISTEN_FDS"}, []string{"PATH=/bin", "LISTEN_FDS_X=1", "listen_fds=3", "WATCHDOG_PID=7", "NOVALUE", "A=b=c", "=x"}},
		{[]string{"LISTEN_FDS", "WATCHDOG_PID", "NOVALUE"}, []string{"PATH=/bin", "LISTEN_FDS_X=1", "listen_fds=3", "A=b=c", "=x"}},
		{[]string{"A"}, []string{"PATH=/bin", "LISTEN_FDS=2", "LISTEN_FDS_X=1", "listen_fds=3", "WATCHDOG_PID=7", "NOVALUE", "=x", "LISTEN_FDS=4"}},
		{[]string{""}, []string{"PATH=/bin", "LISTEN_FDS=2", "LISTEN_FDS_X=1", "listen_fds=3", "WATCHDOG_PID=7", "NOVALUE", "A=b=c", "LISTEN_FDS=4"}},
		{[]string{"LISTEN_"}, env},
	} {
		before := slices.Clone(env)
		if got := Without(env, tc.names...); !slices.Equal(got, tc.want) {
			t.Errorf("Without(%q) = %q; want %q", tc.names, got, tc.want)
		}
		if !slices.Equal(env, before) {
			t.Fatalf("Without(%q) modified its argument", tc.names)
		}
	}
}

func TestWithoutPrefix(t *testing.T) {
	t.Parallel()
	env := []string{"PATH=/bin", "LISTEN_FDS=2", "LISTEN_PID=1", "LISTENER=x", "XLISTEN_FDS=1", "BATON_HANDOFF=3:1", "listen_fds=3"}
	want := []string{"PATH=/bin", "LISTENER=x", "XLISTEN_FDS=1", "listen_fds=3"}
	if got := WithoutPrefix(env, "LISTEN_", "BATON_"); !slices.Equal(got, want) {
		t.Errorf("WithoutPrefix(LISTEN_, BATON_) = %q; want %q", got, want)
	}
	if got := WithoutPrefix(env); !slices.Equal(got, env) {
		t.Errorf("WithoutPrefix() = %q; want all of it", got)
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	env := []string{"A=1", "B", "A=2=3", "C="}
	for _, tc := range []struct {
		name, want string
		ok         bool
	}{{"A", "2=3", true}, {"B", "", true}, {"C", "", true}, {"D", "", false}, {"", "", false}} {
		if v, ok := Lookup(env, tc.name); v != tc.want || ok != tc.ok {
			t.Errorf("Lookup(%q) = %q, %v; want %q, %v", tc.name, v, ok, tc.want, tc.ok)
		}
	}
}

// FuzzWithout: the result is env in order with exactly the named entries
// left out; no entry is changed, none added.
func FuzzWithout(f *testing.F) {
	f.Add("PATH=/bin\x00LISTEN_FDS=2\x00NOVALUE\x00=x", "LISTEN_FDS", "LISTEN_")
	f.Add("", "", "")
	f.Add("A=b=c\x00A\x00AA=1", "A", "A")
	f.Fuzz(func(t *testing.T, joined, drop, prefix string) {
		env := strings.Split(joined, "\x00")
		got := Without(env, drop)
		var want []string
		for _, kv := range env {
			if n, _, _ := strings.Cut(kv, "="); n != drop {
				want = append(want, kv)
			}
		}
		if !slices.Equal(got, want) {
			t.Fatalf("Without(%q, %q) = %q; want %q", env, drop, got, want)
		}
		if _, ok := Lookup(got, drop); ok {
			t.Fatalf("Lookup(Without(env, %q), %q) found it", drop, drop)
		}
		for _, kv := range WithoutPrefix(env, prefix) {
			if n, _, _ := strings.Cut(kv, "="); strings.HasPrefix(n, prefix) {
				t.Fatalf("WithoutPrefix(%q, %q) kept %q", env, prefix, kv)
			}
			if !slices.Contains(env, kv) {
				t.Fatalf("WithoutPrefix(%q, %q) made up %q", env, prefix, kv)
			}
		}
	})
}
