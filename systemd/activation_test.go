package systemd

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestParseListenEnv(t *testing.T) {
	t.Parallel()
	const self = 4242
	acts := func(names ...string) []Activated {
		var a []Activated
		for i, name := range names {
			a = append(a, Activated{Name: name, Fd: ListenFDsStart + i})
		}
		return a
	}
	unknown := func(n int) []Activated {
		return acts(slices.Repeat([]string{"unknown"}, n)...)
	}
	for _, tc := range []struct {
		name              string
		pid, fds, fdnames string
		want              []Activated
		wantErr           string
	}{
		{name: "nothing"},
		{name: "only fds", fds: "2", fdnames: "a:b"},
		{name: "for another process", pid: "4243", fds: "2", fdnames: "a:b"},
		{name: "for another process, rest malformed", pid: "1", fds: "x", fdnames: "\x01"},
		{name: "for us, no fds", pid: "4242"},
		{name: "one unnamed", pid: "4242", fds: "1", want: unknown(1)},
		{name: "three unnamed", pid: "4242", fds: "3", want: unknown(3)},
		{name: "named", pid: "4242", fds: "2", fdnames: "http:https", want: acts("http", "https")},
		{name: "leading zeros", pid: "04242", fds: "02", fdnames: "a:b", want: acts("a", "b")},
		{name: "empty names", pid: "4242", fds: "3", fdnames: "a::", want: acts("a", "", "")},
		{name: "printable names", pid: "4242", fds: "1", fdnames: "stored #1 (tcp/8080) ~!", want: acts("stored #1 (tcp/8080) ~!")},
		{name: "longest name", pid: "4242", fds: "1", fdnames: strings.Repeat("n", 255), want: acts(strings.Repeat("n", 255))},
		{name: "most fds", pid: "4242", fds: strconv.Itoa(MaxListenFDs), want: unknown(MaxListenFDs)},

		{name: "pid not a number", pid: "self", fds: "1", wantErr: "LISTEN_PID"},
		{name: "pid zero", pid: "0", fds: "1", wantErr: "LISTEN_PID"},
		{name: "pid negative", pid: "-4242", fds: "1", wantErr: "LISTEN_PID"},
		{name: "pid with plus", pid: "+4242", fds: "1", wantErr: "LISTEN_PID"},
		{name: "pid with space", pid: " 4242", fds: "1", wantErr: "LISTEN_PID"},
		{name: "pid too big", pid: "2147483648", fds: "1", wantErr: "LISTEN_PID"},
		{name: "pid overflow", pid: "99999999999999999999999", fds: "1", wantErr: "LISTEN_PID"},
		{name: "fds zero", pid: "4242", fds: "0", wantErr: "LISTEN_FDS"},
		{name: "fds negative", pid: "4242", fds: "-1", wantErr: "LISTEN_FDS"},
		{name: "fds not a number", pid: "4242", fds: "two", wantErr: "LISTEN_FDS"},
		{name: "fds trailing junk", pid: "4242", fds: "2 ", wantErr: "LISTEN_FDS"},
		{name: "fds too many", pid: "4242", fds: strconv.Itoa(MaxListenFDs + 1), wantErr: "LISTEN_FDS"},
		{name: "fewer names", pid: "4242", fds: "3", fdnames: "a:b", wantErr: "2 names for LISTEN_FDS=3"},
		{name: "more names", pid: "4242", fds: "1", fdnames: "a:b", wantErr: "2 names for LISTEN_FDS=1"},
		{name: "name with control", pid: "4242", fds: "1", fdnames: "a\nb", wantErr: "bad name"},
		{name: "name not ascii", pid: "4242", fds: "1", fdnames: "café", wantErr: "bad name"},
		{name: "name too long", pid: "4242", fds: "1", fdnames: strings.Repeat("n", 256), wantErr: "bad name"},
	} {
		got, err := ParseListenEnv(tc.pid, tc.fds, tc.fdnames, self)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: ParseListenEnv(%q, %q, %q, %d) = %d descriptors, %v; want an error containing %q", tc.name, tc.pid, tc.fds, tc.fdnames, self, len(got), err, tc.wantErr)
			}
			continue
		}
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: ParseListenEnv(%q, %q, %q, %d) = %v, %v; want %v", tc.name, tc.pid, tc.fds, tc.fdnames, self, short(got), err, short(tc.want))
		}
	}
}

// short keeps a failure message about thousands of descriptors readable.
func short(acts []Activated) string {
	if len(acts) > 4 {
		return strconv.Itoa(len(acts)) + " descriptors"
	}
	var b strings.Builder
	for _, a := range acts {
		b.WriteString(a.Name + "=" + strconv.Itoa(a.Fd) + " ")
	}
	return "[" + strings.TrimSpace(b.String()) + "]"
}

func TestListenEnv(t *testing.T) {
	t.Parallel()
	for _, names := range [][]string{
		{"http"},
		{"unknown", "unknown"},
		{"http", "https", "stored #3 (udp/53)"},
		slices.Repeat([]string{"n"}, 1000),
	} {
		env, err := ListenEnv(4242, names)
		if err != nil {
			t.Fatalf("ListenEnv(4242, %q): %v", names, err)
		}
		if len(env) != 3 || env[0] != "LISTEN_PID=4242" || env[1] != "LISTEN_FDS="+strconv.Itoa(len(names)) {
			t.Fatalf("ListenEnv(4242, %q) = %q", names, env)
		}
		vals := map[string]string{}
		for _, kv := range env {
			k, v, _ := strings.Cut(kv, "=")
			vals[k] = v
		}
		acts, err := ParseListenEnv(vals["LISTEN_PID"], vals["LISTEN_FDS"], vals["LISTEN_FDNAMES"], 4242)
		if err != nil || len(acts) != len(names) {
			t.Fatalf("ParseListenEnv(ListenEnv(4242, %q)) = %v, %v", names, short(acts), err)
		}
		for i, a := range acts {
			if a.Name != names[i] || a.Fd != ListenFDsStart+i {
				t.Fatalf("ParseListenEnv(ListenEnv(4242, %q))[%d] = %+v, want %q at %d", names, i, a, names[i], ListenFDsStart+i)
			}
		}
	}
	if env, err := ListenEnv(4242, nil); env != nil || err != nil {
		t.Errorf("ListenEnv(4242, nil) = %q, %v; want nil, nil", env, err)
	}
	for _, tc := range []struct {
		pid   int
		names []string
	}{
		{0, []string{"a"}},
		{-1, []string{"a"}},
		{1 << 31, []string{"a"}},
		{4242, []string{""}},
		{4242, []string{"a", ""}},
		{4242, []string{"a:b"}},
		{4242, []string{"new\nline"}},
		{4242, make([]string, MaxListenFDs+1)},
	} {
		if env, err := ListenEnv(tc.pid, tc.names); err == nil {
			t.Errorf("ListenEnv(%d, %d names %.20q) = %q, want an error", tc.pid, len(tc.names), tc.names, env)
		}
	}
}

// FuzzParseListenEnv checks that whatever the environment holds, the parser
// returns consecutive descriptors from ListenFDsStart with valid names, only
// for the right pid, and that ListenEnv writes back what it read.
func FuzzParseListenEnv(f *testing.F) {
	f.Add("4242", "1", "", 4242)
	f.Add("4242", "2", "http:https", 4242)
	f.Add("4242", "3", "a::", 4242)
	f.Add("4243", "2", "a:b", 4242)
	f.Add("4242", "0", "", 4242)
	f.Add("-1", "x", "a\x00b", 4242)
	f.Add("4242", "65533", "", 4242)
	f.Fuzz(func(t *testing.T, listenPID, listenFDs, listenFDNames string, pid int) {
		acts, err := ParseListenEnv(listenPID, listenFDs, listenFDNames, pid)
		if err != nil {
			if acts != nil {
				t.Fatalf("ParseListenEnv returned %d descriptors with error %v", len(acts), err)
			}
			return
		}
		if len(acts) == 0 {
			return
		}
		if listenPID != strconv.Itoa(pid) && strings.TrimLeft(listenPID, "0") != strconv.Itoa(pid) {
			t.Fatalf("ParseListenEnv(%q, ..., pid %d) returned descriptors meant for another process", listenPID, pid)
		}
		if len(acts) > MaxListenFDs {
			t.Fatalf("ParseListenEnv returned %d descriptors, more than %d", len(acts), MaxListenFDs)
		}
		names := make([]string, len(acts))
		named := true
		for i, a := range acts {
			if a.Fd != ListenFDsStart+i || !validFDName(a.Name) {
				t.Fatalf("descriptor %d = %+v, want fd %d and a valid name", i, a, ListenFDsStart+i)
			}
			names[i] = a.Name
			named = named && a.Name != ""
		}
		if !named {
			return // ListenEnv refuses empty names
		}
		env, err := ListenEnv(pid, names)
		if err != nil {
			t.Fatalf("ListenEnv(%d, names read by ParseListenEnv): %v", pid, err)
		}
		back, err := ParseListenEnv(strings.TrimPrefix(env[0], "LISTEN_PID="), strings.TrimPrefix(env[1], "LISTEN_FDS="), strings.TrimPrefix(env[2], "LISTEN_FDNAMES="), pid)
		if err != nil || !slices.Equal(back, acts) {
			t.Fatalf("round trip through ListenEnv = %v, %v; want %v", short(back), err, short(acts))
		}
	})
}

var listenVars = []string{"LISTEN_PID", "LISTEN_PIDFDID", "LISTEN_FDS", "LISTEN_FDNAMES"}

// TestListenersEnv runs Listeners in this process where it must not touch a
// descriptor: the variables are for another process, or malformed.
func TestListenersEnv(t *testing.T) {
	self := strconv.Itoa(os.Getpid())
	for _, tc := range []struct {
		name    string
		env     [4]string // LISTEN_PID, LISTEN_PIDFDID, LISTEN_FDS, LISTEN_FDNAMES
		wantErr string
	}{
		{name: "unset"},
		{name: "another process", env: [4]string{strconv.Itoa(os.Getpid() + 1), "77", "2", "a:b"}},
		{name: "bad LISTEN_FDS", env: [4]string{self, "", "many", ""}, wantErr: "LISTEN_FDS"},
		{name: "names do not match", env: [4]string{self, "", "2", "a"}, wantErr: "LISTEN_FDNAMES"},
	} {
		for i, v := range listenVars {
			t.Setenv(v, tc.env[i])
		}
		acts, err := Listeners()
		if tc.wantErr == "" && (err != nil || acts != nil) || tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: Listeners() = %v, %v; want no descriptors and an error containing %q", tc.name, acts, err, tc.wantErr)
		}
		for _, v := range listenVars {
			if val, ok := os.LookupEnv(v); ok {
				t.Errorf("%s: after Listeners(), %s=%q is still set", tc.name, v, val)
			}
		}
	}
}
