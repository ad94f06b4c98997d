//go:build linux

package baton_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/proctest"
)

// server drives a chain of test server generations (see serverMain).
type server struct {
	t    *testing.T
	proc *proctest.Proc
	cfg  serverConfig // what every generation was started with
	dir  string       // cfg.Dir
	tcp  string       // address of the TCP listener, the same in every generation
	udp  string
	gen  int // generation serving now
	pid  int // its pid
	pids []int
}

var controlClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   30 * time.Second,
}

// startServer starts the test server with cfg (in a new temporary
// directory if cfg.Dir is empty) and env added to the test's environment,
// and waits until its first generation is ready.
func startServer(t *testing.T, cfg serverConfig, env ...string) *server {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	env = append([]string{cfg.env()}, env...)
	s := &server{t: t, proc: proctest.Start(t, "server", env), cfg: cfg, dir: cfg.Dir}
	s.waitReady(1)
	return s
}

// waitReady waits for generation gen to be ready and makes it the current one.
func (s *server) waitReady(gen int) {
	s.t.Helper()
	line, err := s.proc.WaitLine(fmt.Sprintf("ready gen=%d ", gen), 30*time.Second)
	if err != nil {
		s.t.Fatalf("generation %d: %v", gen, err)
	}
	pid, _ := strconv.Atoi(proctest.Field(line, "pid"))
	s.gen, s.pid = gen, pid
	s.tcp, s.udp = proctest.Field(line, "tcp"), proctest.Field(line, "udp")
	s.pids = append(s.pids, pid)
	if gen > 1 {
		proctest.Track(s.t, pid, 15*time.Second)
	}
}

func (s *server) url(path string) string { return "http://" + s.tcp + path }

func (s *server) get(path string) (string, error) {
	resp, err := controlClient.Get(s.url(path))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return string(b), fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return string(b), err
}

// upgrade asks the serving generation to upgrade and returns the error
// Upgrade returned there, if any.
func (s *server) upgrade() error {
	resp, err := controlClient.Post(s.url("/upgrade"), "", nil)
	if err != nil {
		return fmt.Errorf("POST /upgrade: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errors.New(strings.TrimSpace(string(b)))
	}
	return nil
}

// mustUpgrade sends SIGHUP to the serving generation and waits until the
// next one serves. (A signal, not POST /upgrade: right after an upgrade
// the old generation may still accept a connection before it drains, and
// would answer that it has handed over already.)
func (s *server) mustUpgrade() {
	s.t.Helper()
	if err := syscall.Kill(s.pid, syscall.SIGHUP); err != nil {
		s.t.Fatalf("SIGHUP to generation %d (pid %d): %v", s.gen, s.pid, err)
	}
	s.waitReady(s.gen + 1)
}

func (s *server) servingPid() int {
	s.t.Helper()
	body, err := s.get("/")
	if err != nil {
		s.t.Fatalf("GET /: %v", err)
	}
	pid, _ := strconv.Atoi(proctest.Field(body, "pid"))
	return pid
}

// stop sends SIGTERM to the serving generation and waits until every
// generation has exited.
func (s *server) stop() {
	s.t.Helper()
	if err := syscall.Kill(s.pid, syscall.SIGTERM); err != nil {
		s.t.Fatalf("SIGTERM to generation %d (pid %d): %v", s.gen, s.pid, err)
	}
	if _, err := s.proc.WaitLine(fmt.Sprintf("exit gen=%d ", s.gen), 20*time.Second); err != nil {
		s.t.Fatalf("generation %d did not exit after SIGTERM: %v", s.gen, err)
	}
	for _, pid := range s.pids {
		if err := proctest.Reap(pid, 10*time.Second); err != nil {
			s.t.Errorf("after stop: %v", err)
		}
	}
}

func TestUpgradePassesSockets(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig{})
	before := s.servingPid()
	udp1 := udpEcho(t, s.udp)

	s.mustUpgrade()

	body, err := s.get("/")
	if err != nil {
		t.Fatal(err)
	}
	if pid := proctest.Field(body, "pid"); pid == strconv.Itoa(before) || pid != strconv.Itoa(s.pid) {
		t.Errorf("after upgrade, GET / = %q; want pid=%d (not the old %d)", body, s.pid, before)
	}
	if got := proctest.Field(body, "gen"); got != "2" {
		t.Errorf("generation after one upgrade = %s, want 2", got)
	}
	if got := proctest.Field(body, "data"); got != "hello-from-gen1" {
		t.Errorf("file passed by name reads %q, want hello-from-gen1", got)
	}
	if got := proctest.Field(body, "handoff"); got != "false" {
		t.Errorf("BATON_HANDOFF still set in the successor's environment after New")
	}
	if _, err := s.proc.WaitLine("parent-gone gen=2", 20*time.Second); err != nil {
		t.Errorf("successor never saw its parent exit: %v", err)
	}
	// The UDP socket is the same one: same port, now answered by gen 2.
	udp2 := udpEcho(t, s.udp)
	if !strings.Contains(udp2, "pid="+strconv.Itoa(s.pid)) || udp1 == udp2 {
		t.Errorf("UDP echo before %q, after %q; want the new pid %d", udp1, udp2, s.pid)
	}
	// The unix socket file is still there and served by gen 2.
	sock := filepath.Join(s.dir, "s.sock")
	if got := unixGet(t, sock); !strings.Contains(got, "pid="+strconv.Itoa(s.pid)) {
		t.Errorf("GET over %s = %q, want pid=%d", sock, got, s.pid)
	}
	// A grandchild started by gen 2 does not see baton's private variable.
	env, err := s.get("/env")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(env, "BATON_HANDOFF") {
		t.Errorf("a process started by the successor inherited BATON_HANDOFF")
	}
	if proctest.Alive(before) {
		t.Errorf("generation 1 (pid %d) still runs after the upgrade drained", before)
	}

	s.stop()
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("unix socket file after the final stop: %v; want it removed", err)
	}
}

func udpEcho(t *testing.T, addr string) string {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	b := make([]byte, 256)
	for range 20 {
		c.Write([]byte("ping"))
		c.SetReadDeadline(time.Now().Add(250 * time.Millisecond))
		if n, err := c.Read(b); err == nil {
			return string(b[:n])
		}
	}
	t.Fatalf("no UDP answer from %s", addr)
	return ""
}

func unixGet(t *testing.T, path string) string {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}, Timeout: 10 * time.Second}
	resp, err := c.Get("http://unix/")
	if err != nil {
		t.Fatalf("GET over %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A successor that fails in any way leaves the incumbent serving, and the
// error says why.
func TestFailingSuccessorKeepsIncumbent(t *testing.T) {
	t.Parallel()
	notExec := filepath.Join(t.TempDir(), "not-executable")
	os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644)
	garbage := filepath.Join(t.TempDir(), "garbage")
	os.WriteFile(garbage, []byte("#!/bin/sh\nprintf 'R\\000\\000\\000\\003{x}' >&3\nsleep 5\n"), 0o755)

	cases := []struct {
		name string
		cfg  serverConfig
		want []string // substrings of the error
	}{
		{"exit before Listen", serverConfig{FailGen: 2, Fail: failExit}, []string{"exit status 7"}},
		{"exit before Ready", serverConfig{FailGen: 2, Fail: failExitListen}, []string{"exit status 8"}},
		{"Stop before Ready", serverConfig{FailGen: 2, Fail: failStop}, []string{"exit status 10"}},
		{"hang", serverConfig{FailGen: 2, Fail: failHang, UpgradeTimeout: time.Second}, []string{"not ready after 1s", "successor not ready in time"}},
		{"missing binary", serverConfig{Executable: "/nonexistent/server"}, []string{"/nonexistent/server", "no such file"}},
		{"not executable", serverConfig{Executable: notExec}, []string{"not executable"}},
		{"malformed ready", serverConfig{Executable: garbage}, []string{"handoff protocol", "R frame"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, tc.cfg)
			err := s.upgrade()
			if err == nil {
				t.Fatalf("upgrade succeeded; want it to fail with %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("upgrade error %q does not contain %q", err, w)
				}
			}
			if got := s.servingPid(); got != s.pid {
				t.Errorf("after the failed upgrade, pid %d serves; want the incumbent %d", got, s.pid)
			}
			// The unix socket file is still there, still served by it.
			if got := unixGet(t, filepath.Join(s.dir, "s.sock")); !strings.Contains(got, "pid="+strconv.Itoa(s.pid)) {
				t.Errorf("after the failed upgrade, GET over the unix socket = %q, want pid=%d", got, s.pid)
			}
			// The failed successor was killed and reaped: no child left.
			for pid, st := range proctest.Children(s.pid) {
				t.Errorf("incumbent still has child %d (state %s) after a failed upgrade", pid, st)
			}
			s.stop()
		})
	}
}

// After a failed attempt the next upgrade works.
func TestUpgradeAfterFailure(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig{FailGen: 2, Fail: failExitListen, FailOnce: true})
	os.WriteFile(filepath.Join(s.dir, "fail-once"), nil, 0o600)
	if err := s.upgrade(); err == nil || !strings.Contains(err.Error(), "exit status 8") {
		t.Fatalf("first upgrade: %v; want exit status 8", err)
	}
	s.mustUpgrade()
	if got := s.servingPid(); got != s.pid {
		t.Errorf("after the second upgrade pid %d serves, want %d", got, s.pid)
	}
	s.stop()
}

func TestConcurrentUpgradesRunOnce(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig{ReadyDelayGen: 2, ReadyDelay: 500 * time.Millisecond})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.upgrade()
		}()
	}
	wg.Wait()
	ok, busy := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case strings.Contains(err.Error(), "already in progress"), strings.Contains(err.Error(), "upgrader stopped"):
			// "stopped": a call that came after the first had handed over.
			busy++
		default:
			t.Errorf("unexpected upgrade error: %v", err)
		}
	}
	if ok != 1 || busy != len(errs)-1 {
		t.Errorf("%d concurrent upgrades: %d succeeded, %d refused; want exactly 1 success", len(errs), ok, busy)
	}
	s.waitReady(2)
	if _, err := s.proc.WaitLine("ready gen=3 ", 500*time.Millisecond); err == nil {
		t.Errorf("a third generation started: two upgrades ran")
	}
	s.stop()
}

func TestSuccessorSeesParentDeath(t *testing.T) {
	t.Parallel()
	// A long drain keeps generation 1 alive until we kill it.
	s := startServer(t, serverConfig{Drain: time.Minute})
	old := s.pid
	// Hold a slow request so gen 1 cannot finish draining by itself.
	go s.get("/?delay=30s")
	time.Sleep(100 * time.Millisecond)
	s.mustUpgrade()
	if _, err := s.proc.WaitLine("parent-gone gen=2", 300*time.Millisecond); err == nil {
		t.Fatalf("successor reported its parent gone while the parent still drains")
	}
	syscall.Kill(old, syscall.SIGKILL)
	if _, err := s.proc.WaitLine("parent-gone gen=2", 10*time.Second); err != nil {
		t.Errorf("successor did not see its SIGKILLed parent: %v", err)
	}
	s.stop()
}

// The PID file always holds a whole pid, and after every upgrade it names
// the generation that serves.
func TestPIDFileFollowsServingGeneration(t *testing.T) {
	t.Parallel()
	pidFile := filepath.Join(t.TempDir(), "server.pid")
	s := startServer(t, serverConfig{PIDFile: pidFile})

	stop := make(chan struct{})
	var bad []string
	var reads int
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			b, err := os.ReadFile(pidFile)
			reads++
			if err != nil {
				bad = append(bad, err.Error())
			} else if _, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
				bad = append(bad, fmt.Sprintf("%q", b))
			}
			time.Sleep(200 * time.Microsecond)
		}
	}()
	for range 5 {
		if got := readPid(t, pidFile); got != s.pid {
			t.Errorf("PID file names %d, generation %d serves as %d", got, s.gen, s.pid)
		}
		s.mustUpgrade()
	}
	close(stop)
	<-done
	if len(bad) > 0 {
		t.Errorf("%d of %d reads of the PID file saw a missing or partial file: %v", len(bad), reads, bad[:min(len(bad), 5)])
	}
	if got := readPid(t, pidFile); got != s.pid {
		t.Errorf("PID file names %d, generation %d serves as %d", got, s.gen, s.pid)
	}
	s.stop()
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("PID file after the final stop: %v; want it removed", err)
	}
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	// The successor renames the file in right after its ready is acknowledged.
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if err == nil && proctest.Alive(pid) || time.Now().After(deadline) {
			return pid
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Fifty upgrades leave no descriptor behind, no zombie, and no old
// generation running.
func TestManyUpgradesLeakNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("50 upgrades: skipped with -short")
	}
	t.Parallel()
	s := startServer(t, serverConfig{})
	s.mustUpgrade()
	base := proctest.FdCount(s.pid)
	for range 50 {
		s.mustUpgrade()
	}
	if got := proctest.FdCount(s.pid); got != base {
		t.Errorf("generation %d has %d descriptors open, generation 2 had %d", s.gen, got, base)
	}
	for _, pid := range s.pids[:len(s.pids)-1] {
		if err := proctest.Reap(pid, 10*time.Second); err != nil {
			t.Errorf("old generation: %v", err)
		}
	}
	for pid, st := range proctest.Children(s.pid) {
		t.Errorf("serving generation has child %d in state %s", pid, st)
	}
	t.Logf("generation %d serves with %d descriptors open, as generation 2 did", s.gen, base)
	s.stop()
}
