package systemd

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestNilNotifier(t *testing.T) {
	t.Parallel()
	for _, n := range []*Notifier{nil, {}} {
		checkNoop(t, n)
	}
	if n := NewNotifierFrom(""); n != nil {
		t.Errorf(`NewNotifierFrom("") = %v, want nil`, n)
	}
}

func checkNoop(t *testing.T, n *Notifier) {
	t.Helper()
	for name, call := range map[string]func() error{
		"Ready":         n.Ready,
		"Reloading":     n.Reloading,
		"Stopping":      n.Stopping,
		"Status":        func() error { return n.Status("x") },
		"MainPID":       func() error { return n.MainPID(0) }, // even a bad pid: nothing is sent
		"Barrier":       func() error { return n.Barrier(time.Nanosecond) },
		"FDStore":       func() error { return n.FDStore("x", 1) },
		"FDStoreRemove": func() error { return n.FDStoreRemove("x") },
		"Watchdog":      n.Watchdog,
		"Send":          func() error { return n.Send("READY=1") },
		"SendFDs":       func() error { return n.SendFDs([]int{1}, "READY=1") },
	} {
		if err := call(); err != nil {
			t.Errorf("(%#v).%s() = %v, want nil", n, name, err)
		}
	}
	if d, ok := n.WatchdogInterval(); d != 0 || ok {
		t.Errorf("(%#v).WatchdogInterval() = %v, %v; want 0, false", n, d, ok)
	}
}

func TestNewNotifierUnset(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if n, err := NewNotifier(); n != nil || err != nil {
		t.Errorf("NewNotifier() with NOTIFY_SOCKET empty = %v, %v; want nil, nil", n, err)
	}
	os.Unsetenv("NOTIFY_SOCKET") // t.Setenv restores it
	if n, err := NewNotifier(); n != nil || err != nil {
		t.Errorf("NewNotifier() with NOTIFY_SOCKET unset = %v, %v; want nil, nil", n, err)
	}
}

func TestCheckNotifySocket(t *testing.T) {
	t.Parallel()
	for addr, wantErr := range map[string]string{
		"":                                    "no notification socket",
		"/run/systemd/notify":                 "",
		"@/org/freedesktop/systemd1/notify/1": "",
		"@x":                                  "",
		"/" + strings.Repeat("p", 106):        "",
		"/" + strings.Repeat("p", 107):        "longer than 107",
		"@" + strings.Repeat("p", 107):        "longer than 107",
		"run/notify":                          "absolute path",
		"./notify":                            "absolute path",
		"@":                                   "absolute path",
		"/a\x00b":                             "NUL",
		"vsock:2:1234":                        "AF_VSOCK",
		"vsock-stream:2:1234":                 "AF_VSOCK",
	} {
		err := checkNotifySocket(addr)
		if wantErr == "" && err != nil || wantErr != "" && (err == nil || !strings.Contains(err.Error(), wantErr)) {
			t.Errorf("checkNotifySocket(%q) = %v, want an error containing %q", addr, err, wantErr)
		}
	}
}

func TestParseWatchdog(t *testing.T) {
	t.Parallel()
	const self = 4242
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
		ok        bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, true},
		{"30000000", "4242", 30 * time.Second, true},
		{"30000000", "4243", 0, false}, // for another process
		{"1", "", time.Microsecond, true},
		{"0", "", 0, false},
		{"-1", "", 0, false},
		{"+5", "", 0, false},
		{" 5", "", 0, false},
		{"5s", "", 0, false},
		{strconv.FormatUint(maxWatchdogUsec, 10), "", time.Duration(maxWatchdogUsec) * time.Microsecond, true},
		{strconv.FormatUint(maxWatchdogUsec+1, 10), "", 0, false},
		{"18446744073709551616", "", 0, false}, // 2^64
		{"30000000", "0", 0, false},
		{"30000000", "x", 0, false},
		{"30000000", "2147483648", 0, false},
	} {
		got, ok := parseWatchdog(tc.usec, tc.pid, self)
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseWatchdog(%q, %q, %d) = %v, %v; want %v, %v", tc.usec, tc.pid, self, got, ok, tc.want, tc.ok)
		}
	}
}

// FuzzParseWatchdog checks WATCHDOG_USEC and WATCHDOG_PID against a second
// reading with strconv: a watchdog is on only for plain decimal digits that
// fit a time.Duration, and only for the right pid.
func FuzzParseWatchdog(f *testing.F) {
	f.Add("30000000", "", 4242)
	f.Add("30000000", "4242", 4242)
	f.Add("30000000", "04242", 4242)
	f.Add("30000000", "4243", 4242)
	f.Add("+5", "", 1)
	f.Add(strconv.FormatUint(maxWatchdogUsec, 10), "", 1)
	f.Add(strconv.FormatUint(maxWatchdogUsec+1, 10), "", 1)
	f.Add("18446744073709551616", "2147483648", 1)
	f.Fuzz(func(t *testing.T, usec, watchdogPID string, pid int) {
		d, ok := parseWatchdog(usec, watchdogPID, pid)
		if !ok {
			if d != 0 {
				t.Fatalf("parseWatchdog(%q, %q, %d) = %v, false; want 0 when off", usec, watchdogPID, pid, d)
			}
			return
		}
		u, err := strconv.ParseUint(usec, 10, 64)
		if err != nil || strings.TrimLeft(usec, "0123456789") != "" || u == 0 || u > maxWatchdogUsec {
			t.Fatalf("parseWatchdog(%q, ...) accepted a WATCHDOG_USEC strconv reads as %d, %v", usec, u, err)
		}
		if d <= 0 || d != time.Duration(u)*time.Microsecond {
			t.Fatalf("parseWatchdog(%q, ...) = %v; want %dµs", usec, d, u)
		}
		if watchdogPID != "" {
			p, err := strconv.ParseUint(watchdogPID, 10, 64)
			if err != nil || strings.TrimLeft(watchdogPID, "0123456789") != "" || p != uint64(pid) || pid <= 0 {
				t.Fatalf("parseWatchdog(_, %q, %d): on for WATCHDOG_PID %d, %v", watchdogPID, pid, p, err)
			}
		}
	})
}

// FuzzCheckNotifySocket checks that any NOTIFY_SOCKET accepted is a path
// or an abstract name the kernel takes as a sockaddr_un.
func FuzzCheckNotifySocket(f *testing.F) {
	for _, s := range []string{"", "/run/systemd/notify", "@/org/freedesktop/systemd1/notify/1", "@", "@\x00", "/a\x00b", "vsock:2:1234", "notify", "/" + strings.Repeat("p", 107)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		if checkNotifySocket(addr) != nil {
			return
		}
		switch {
		case len(addr) < 2 && addr != "/",
			addr[0] != '/' && addr[0] != '@',
			len(addr) > maxSocketPath,
			strings.IndexByte(addr, 0) >= 0,
			strings.HasPrefix(addr, "vsock"):
			t.Fatalf("checkNotifySocket(%q) accepted it", addr)
		}
	})
}
