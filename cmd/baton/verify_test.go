//go:build unix

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/procfs"
)

// verify runs "baton verify args" in this process, bounded.
func verify(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errOut bytes.Buffer
	code = run(ctx, append([]string{"verify"}, args...), &out, &errOut)
	if ctx.Err() != nil {
		t.Fatalf("baton verify %q: still running after a minute\nstderr:\n%s", args, errOut.String())
	}
	return code, out.String(), errOut.String()
}

// testServer is a server process on loopback, seen the way "baton verify"
// sees one: a URL and a PID file.
type testServer struct {
	url, pidFile, logFile string
}

// startServer runs argv (with -listen ADDR -pid-file PATH appended) and
// waits until it answers. At the end of the test the pid in the PID file is
// sent SIGTERM, and every pid the server ever had — the first, and any
// pid=N its log names (the demo server's generations) — must be gone.
func startServer(t *testing.T, argv ...string) *testServer {
	t.Helper()
	addr, err := demoAddr("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	s := &testServer{
		url:     "http://" + addr + "/",
		pidFile: filepath.Join(dir, "server.pid"),
		logFile: filepath.Join(dir, "server.log"),
	}
	log, err := os.Create(s.logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	// A file, not a pipe: successors inherit it and outlive the first.
	cmd := exec.Command(argv[0], append(argv[1:], "-listen", addr, "-pid-file", s.pidFile)...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %q: %v", argv, err)
	}
	first := cmd.Process.Pid
	waited := make(chan struct{})
	go func() { cmd.Wait(); close(waited) }()
	t.Cleanup(func() {
		pids := s.pids(first)
		if pid, err := readPIDFile(s.pidFile); err == nil {
			syscall.Kill(pid, syscall.SIGTERM)
		} else {
			cmd.Process.Signal(syscall.SIGTERM)
		}
		deadline := time.Now().Add(15 * time.Second)
		for _, pid := range pids {
			for !exited(pid) && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if !exited(pid) {
				t.Errorf("server pid %d still runs 15s after SIGTERM; killing it", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		select {
		case <-waited:
		case <-time.After(5 * time.Second):
			t.Errorf("first server process %d was not reaped", first)
		}
		if t.Failed() {
			b, _ := os.ReadFile(s.logFile)
			t.Logf("server log:\n%s", b)
		}
	})

	deadline := time.Now().Add(15 * time.Second)
	for {
		if _, err := readPIDFile(s.pidFile); err == nil {
			if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
				c.Close()
				return s
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(s.logFile)
			t.Fatalf("%q: no PID file or no answer on %s within 15s; log:\n%s", argv, addr, b)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var logPID = regexp.MustCompile(`\bpid=(\d+)`)

// pids lists first and every pid=N in the server's log.
func (s *testServer) pids(first int) []int {
	pids := []int{first}
	b, _ := os.ReadFile(s.logFile)
	for _, m := range logPID.FindAllSubmatch(b, -1) {
		if pid, _ := strconv.Atoi(string(m[1])); pid > 0 && !slices.Contains(pids, pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// exited reports whether pid has exited: it is gone, or a zombie (an
// orphaned generation waits for init to reap it, and some inits never do).
func exited(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return true
	}
	st, err := procfs.ReadStat(pid)
	if err != nil {
		return false // no /proc here: kill -0 said it exists
	}
	return st.Zombie()
}

// rebind builds testdata/rebind, the server that re-binds instead of
// handing its socket over.
func rebind(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "rebind")
	out, err := exec.Command("go", "build", "-o", bin, "./testdata/rebind").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./testdata/rebind: %v\n%s", err, out)
	}
	return bin
}

func decodeReport(t *testing.T, stdout string) *loadgen.Report {
	t.Helper()
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("baton verify -json: %v; stdout:\n%s", err, stdout)
	}
	return &rep
}

// The demo server hands its socket over: verify, pointed at it the way a
// user points it at theirs, must pass in both modes.
func TestVerifyPassesOnDemoServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 5 upgrades under load: skipped with -short")
	}
	t.Parallel()
	s := startServer(t, baton(t), "demo-server", "-drain", "5s", "-idle-grace", "2s")
	code, stdout, stderr := verify(t, "-url", s.url,
		"-reload", fmt.Sprintf(`kill -HUP "$(cat %s)"`, s.pidFile), "-pid-file", s.pidFile,
		"-upgrades", "5", "-clients", "8", "-slow", "200ms", "-warmup", "500ms")
	t.Logf("report:\n%s", stdout)
	if code != exitOK {
		t.Fatalf("baton verify = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitOK, stdout, stderr)
	}
	for _, want := range []string{"PASS: 0 failed requests across 5 upgrades", "fresh", "keepalive", "upgrades        5 ok, 0 failed", "5 ok, 0 failed (delay 200ms)"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	if !strings.Contains(stderr, "upgrade 5/5 ok") || strings.Contains(stderr, "hint") {
		t.Errorf("stderr: want progress up to 5/5 and no hint, got:\n%s", stderr)
	}
	// Each upgrade waited for a new pid in the PID file: six generations served.
	_, pids, _ := strings.Cut(stdout, "\npids")
	pids, _, _ = strings.Cut(pids, "\n\n")
	if n := strings.Count(pids, "requests)"); n != 6 {
		t.Errorf("report names %d serving pids, want 6 (one per generation):\n%s", n, stdout)
	}
}

// A server that closes its listener and re-binds refuses connections for a
// moment at every "upgrade": verify must see it, say so and exit 1.
func TestVerifyCatchesRebind(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 5 upgrades under load: skipped with -short")
	}
	t.Parallel()
	s := startServer(t, rebind(t))
	pid, err := readPIDFile(s.pidFile)
	if err != nil {
		t.Fatal(err)
	}
	// Its pid never changes, so the reload command itself waits a little
	// past the 50ms gap, as a synchronous reload would.
	code, stdout, stderr := verify(t, "-url", s.url, "-reload", fmt.Sprintf("kill -HUP %d && sleep 0.1", pid),
		"-upgrades", "5", "-clients", "8", "-slow", "200ms", "-warmup", "500ms", "-json")
	if code != exitFailed {
		t.Fatalf("baton verify = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitFailed, stdout, stderr)
	}
	rep := decodeReport(t, stdout)
	var fresh *loadgen.ModeReport
	for i := range rep.Modes {
		m := &rep.Modes[i]
		t.Logf("%s: %d requests, failures %+v", m.Mode, m.Requests, m.Failures)
		if m.Mode == loadgen.Fresh {
			fresh = m
		}
	}
	switch {
	case fresh == nil || len(rep.Modes) != 2:
		t.Fatalf("report modes = %+v, want fresh and keepalive", rep.Modes)
	case rep.FailedRequests == 0 || fresh.Failures.Refused == 0:
		t.Errorf("report: %d failed requests, %d refused in fresh mode; want some of each", rep.FailedRequests, fresh.Failures.Refused)
	case rep.Upgrades.OK != 5 || rep.Upgrades.Failed != 0:
		t.Errorf("report upgrades = %+v, want 5 ok (the reload command succeeded)", rep.Upgrades)
	case len(fresh.Failures.Examples["refused"]) == 0:
		t.Errorf("report keeps no example of a refused request: %+v", fresh.Failures)
	}
	for _, want := range []string{"hint: refused means", "responses named 1 serving pid(s) across 5 upgrades"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

// Failed upgrades: a reload command that exits non-zero, one that hangs,
// and a PID file that never changes. No request fails (keep-alive clients
// never notice the re-binding server), but each upgrade does.
func TestVerifyFailedUpgrade(t *testing.T) {
	if testing.Short() {
		t.Skip("runs load: skipped with -short")
	}
	t.Parallel()
	s := startServer(t, rebind(t))
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"exit status", []string{"-reload", "echo starting; echo boom >&2; exit 7"},
			"upgrade 1: reload command: exit status 7: starting | boom"},
		{"hangs", []string{"-reload", "sleep 3", "-ready-timeout", "300ms"},
			"upgrade 1: reload command still running after -ready-timeout 300ms; killed"},
		{"pid file unchanged", []string{"-reload", "true", "-pid-file", s.pidFile, "-ready-timeout", "300ms"},
			"still names pid"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			args := append([]string{"-url", s.url, "-upgrades", "1", "-mode", "keepalive", "-clients", "2",
				"-slow", "0", "-warmup", "200ms", "-settle", "100ms", "-json"}, tc.args...)
			code, stdout, stderr := verify(t, args...)
			if code != exitFailed {
				t.Fatalf("baton verify %q = %d, want %d\nstderr:\n%s", tc.args, code, exitFailed, stderr)
			}
			rep := decodeReport(t, stdout)
			if rep.Upgrades.Failed != 1 || len(rep.Upgrades.Errors) != 1 || !strings.Contains(rep.Upgrades.Errors[0], tc.want) {
				t.Errorf("report upgrades = %+v, want 1 failed with %q", rep.Upgrades, tc.want)
			}
			if rep.FailedRequests != 0 || rep.Slow != nil {
				t.Errorf("report: %d failed requests, slow %+v; want 0 and no slow requests (-slow 0)", rep.FailedRequests, rep.Slow)
			}
		})
	}
}

func TestVerifyNoServer(t *testing.T) {
	addr, err := demoAddr("127.0.0.1:0") // free, and nobody listens
	if err != nil {
		t.Fatal(err)
	}
	code, _, stderr := verify(t, "-url", "http://"+addr+"/", "-reload", "true", "-warmup", "200ms")
	if code != exitNoStart || !strings.Contains(stderr, "connection refused") || !strings.Contains(stderr, "is it running") {
		t.Errorf("baton verify against a closed port = %d, stderr:\n%s\nwant %d, the cause and a hint", code, stderr, exitNoStart)
	}
}

func TestVerifyUsageErrors(t *testing.T) {
	t.Parallel()
	url := "http://127.0.0.1:9/"
	cases := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"-reload", "true"}, exitUsage, []string{"-url is required", "hint: point it at your running server"}},
		{[]string{"-url", url}, exitUsage, []string{"-reload is required", "hint:"}},
		{[]string{"-url", url, "-reload", "true", "-mode", "bogus"}, exitUsage, []string{`-mode "bogus": want fresh, keepalive, both or pausing`}},
		{[]string{"-url", "http://192.0.2.1:8080/", "-reload", "true"}, exitUsage, []string{`"192.0.2.1" is not a loopback host`, "hint: ", "-allow-remote"}},
		{[]string{"-url", "http://example.com/", "-reload", "true"}, exitUsage, []string{`"example.com" is not a loopback host`}},
		{[]string{"-url", "https://127.0.0.1/", "-reload", "true"}, exitUsage, []string{`scheme "https" is not supported`, "hint:"}},
		{[]string{"-url", "http:///x", "-reload", "true"}, exitUsage, []string{"no host"}},
		{[]string{"-url", url, "-reload", "systemctl", "reload", "app"}, exitUsage, []string{`unexpected argument "reload"`, "hint: quote the reload command"}},
		{[]string{"-url", url, "-reload", "true", "-upgrades", "0"}, exitUsage, []string{"at least 1"}},
		{[]string{"-url", url, "-reload", "true", "-slow", "-1s"}, exitUsage, []string{"must not be negative"}},
		{[]string{"-url", url, "-reload", "true", "-ready-timeout", "0"}, exitUsage, []string{"must be positive"}},
		{[]string{"-url", url, "-reload", "true", "-nope"}, exitUsage, []string{"flag provided but not defined"}},
		{[]string{"-url", url, "-reload", "true", "-pid-file", "/nonexistent/app.pid"}, exitNoStart, []string{"no such file", "hint: start the server first"}},
		{[]string{"-h"}, exitOK, []string{"Usage: baton verify", "Examples:", "-pid-file"}},
	}
	for _, tc := range cases {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), append([]string{"verify"}, tc.args...), &stdout, &stderr)
		if code != tc.code {
			t.Errorf("baton verify %q = %d, want %d; stderr:\n%s", tc.args, code, tc.code, stderr.String())
			continue
		}
		for _, want := range tc.want {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("baton verify %q: stderr lacks %q:\n%s", tc.args, want, stderr.String())
			}
		}
	}
}

func TestCheckVerifyURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url         string
		allowRemote bool
		ok          bool
	}{
		{"http://127.0.0.1:8080/", false, true},
		{"http://127.1.2.3/healthz?x=1", false, true},
		{"http://[::1]:8080/", false, true},
		{"http://LocalHost:8080/", false, true},
		{"http://10.0.0.1/", false, false},
		{"http://[::ffff:10.0.0.1]/", false, false},
		{"http://localhost.example.com/", false, false},
		{"http://10.0.0.1/", true, true},
		{"https://127.0.0.1/", true, false},
		{"127.0.0.1:8080", false, false},
		{"http://:8080/", true, false},
	} {
		err := checkVerifyURL(tc.url, tc.allowRemote)
		if (err == nil) != tc.ok {
			t.Errorf("checkVerifyURL(%q, %v) = %v, want ok=%v", tc.url, tc.allowRemote, err, tc.ok)
		}
	}
}

func TestParsePIDFile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want int // 0: an error
	}{
		{"1234\n", 1234},
		{" 42 ", 42},
		{"", 0},
		{"0\n", 0},
		{"-5", 0},
		{"12a", 0},
		{"1234\n5678\n", 0},
		{"2147483647", 2147483647},
		{"2147483648", 0}, // beyond pid_t
	} {
		got, err := parsePIDFile([]byte(tc.in))
		if got != tc.want || (err == nil) != (tc.want != 0) {
			t.Errorf("parsePIDFile(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

func TestOutputTail(t *testing.T) {
	t.Parallel()
	var o outputTail
	if got := o.summary(); got != "" {
		t.Errorf("summary of no output = %q, want empty", got)
	}
	o.Write([]byte("first\n\n  second  \n"))
	if got, want := o.summary(), ": first | second"; got != want {
		t.Errorf("summary = %q, want %q", got, want)
	}
	o.Write(bytes.Repeat([]byte("x"), 3*reloadOutputMax))
	o.Write([]byte("\nlast\n"))
	got := o.summary()
	if len(o.b) != reloadOutputMax || !strings.HasPrefix(got, ": …x") || !strings.HasSuffix(got, "x | last") {
		t.Errorf("after %d bytes: kept %d (want %d), summary %.20q…%q", 3*reloadOutputMax, len(o.b), reloadOutputMax, got, got[max(0, len(got)-20):])
	}
}

// The proof the master is for: "baton verify" around "baton run", with
// "baton reload" (synchronous) as the upgrade, finds zero failures.
func TestVerifyPassesUnderBatonRun(t *testing.T) {
	if testing.Short() {
		t.Skip("runs 5 reloads under load: skipped with -short")
	}
	t.Parallel()
	addr, err := demoAddr("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctl := filepath.Join(dir, "ctl", "control.sock")
	logFile := filepath.Join(dir, "master.log")
	log, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	bin := baton(t)
	cmd := exec.Command(bin, "run", "-control", ctl, "-listen", "tcp://"+addr, "--",
		bin, "demo-server", "-listen", addr, "-drain", "5s", "-idle-grace", "2s")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	t.Cleanup(func() {
		exec.Command(bin, "stop", "-control", ctl).Run()
		select {
		case <-waited:
		case <-time.After(20 * time.Second):
			t.Errorf("baton run still running 20s after baton stop; killing it")
			cmd.Process.Kill()
			<-waited
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("master log:\n%s", b)
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			if exec.Command(bin, "status", "-control", ctl).Run() == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logFile)
			t.Fatalf("baton run never served on %s; log:\n%s", addr, b)
		}
		time.Sleep(20 * time.Millisecond)
	}

	code, stdout, stderr := verify(t, "-url", "http://"+addr+"/",
		"-reload", fmt.Sprintf("%s reload -control %s", bin, ctl),
		"-upgrades", "5", "-clients", "8", "-slow", "200ms", "-warmup", "500ms")
	t.Logf("report:\n%s", stdout)
	if code != exitOK {
		t.Fatalf("baton verify = %d, want %d\nstdout:\n%s\nstderr:\n%s", code, exitOK, stdout, stderr)
	}
	if !strings.Contains(stdout, "PASS: 0 failed requests across 5 upgrades") {
		t.Errorf("report lacks the pass line:\n%s", stdout)
	}
	// Every reload replaced the worker: six served.
	_, pids, _ := strings.Cut(stdout, "\npids")
	pids, _, _ = strings.Cut(pids, "\n\n")
	if n := strings.Count(pids, "requests)"); n != 6 {
		t.Errorf("report names %d serving pids, want 6 (one per generation):\n%s", n, stdout)
	}
}

// FuzzParsePIDFile reads what a server wrote to its PID file: what it
// accepts is a pid (positive, and fits a pid_t) that reads back the same
// from the file baton itself writes.
func FuzzParsePIDFile(f *testing.F) {
	for _, s := range []string{"1234\n", " 42 ", "", "0\n", "-5", "+7", "12a", "1234\n5678\n", "2147483647\n", "2147483648", "\x0042"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		pid, err := parsePIDFile(b)
		if err != nil {
			if pid != 0 {
				t.Fatalf("parsePIDFile(%q) = %d with error %v", b, pid, err)
			}
			return
		}
		if pid <= 0 || pid > 1<<31-1 {
			t.Fatalf("parsePIDFile(%q) = %d: not a pid", b, pid)
		}
		if back, err := parsePIDFile([]byte(strconv.Itoa(pid) + "\n")); err != nil || back != pid {
			t.Fatalf("parsePIDFile(%q) = %d, but the file baton writes for it reads %d, %v", b, pid, back, err)
		}
	})
}

// FuzzCheckVerifyURL checks the -url flag: what it accepts is plain HTTP
// to a loopback host (unless remote hosts are allowed), and loadgen takes
// it too.
func FuzzCheckVerifyURL(f *testing.F) {
	for _, s := range []string{"http://127.0.0.1:8080/", "http://[::1]:8080/x?y", "http://LocalHost/", "http://10.0.0.1/", "https://127.0.0.1/", "127.0.0.1:8080", "http://:8080/", "http://[::ffff:127.0.0.1]/", "http://127.0.0.1%25lo/", "http://user@127.0.0.1/#f"} {
		f.Add(s, false)
	}
	f.Add("http://example.com/", true)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f.Fuzz(func(t *testing.T, raw string, allowRemote bool) {
		if checkVerifyURL(raw, allowRemote) != nil {
			return
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "http" || u.Hostname() == "" {
			t.Fatalf("checkVerifyURL(%q, %v) accepted a URL that parses as %v, %v", raw, allowRemote, u, err)
		}
		if !allowRemote && !strings.EqualFold(u.Hostname(), "localhost") {
			if ip := net.ParseIP(u.Hostname()); ip == nil || !ip.IsLoopback() {
				t.Fatalf("checkVerifyURL(%q, false) accepted host %q", raw, u.Hostname())
			}
		}
		// Without an Upgrade, loadgen refuses the Config right after the
		// URL: an error about anything else is an URL it refuses.
		_, err = loadgen.Run(ctx, loadgen.Config{URL: raw})
		if err == nil || !strings.Contains(err.Error(), "Config.Upgrade is nil") {
			t.Fatalf("checkVerifyURL(%q, %v) accepted a URL loadgen refuses: %v", raw, allowRemote, err)
		}
	})
}
