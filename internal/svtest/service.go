//go:build linux

package svtest

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
	"syscall"
	"testing"
	"time"
)

// maxUnixPath is the room for a unix socket path in sockaddr_un on Linux,
// terminating NUL included.
const maxUnixPath = 108

// A Service is a service directory and the files its run script points
// the server at, all under one temporary directory, Root:
//
//	Root/service/run       the run script (WriteRun)
//	Root/service/supervise the supervisor's state, status file included
//	Root/pid               PIDFile
//	Root/ctl/control.sock  Control, in a directory only we can enter
//	Root/server.out        Output: what the server and its copies print
//	Root/supervisor.out    what the supervisor prints (Start)
//
// Nothing but the run script and the supervisor's own state is in the
// service directory: runsv and s6-supervise give meaning to names there
// (log, finish, down, notification-fd, …).
type Service struct {
	Root    string
	Dir     string
	Addr    string // 127.0.0.1:PORT, a port that was free when picked
	PIDFile string
	Control string
	Output  string

	argv []string // what the run script execs
}

// NewService lays out a Service in a new t.TempDir(), without a run script.
func NewService(t testing.TB) *Service {
	t.Helper()
	root := t.TempDir()
	s := &Service{
		Root:    root,
		Dir:     filepath.Join(root, "service"),
		Addr:    freePort(t),
		PIDFile: filepath.Join(root, "pid"),
		Control: filepath.Join(root, "ctl", "control.sock"),
		Output:  filepath.Join(root, "server.out"),
	}
	if len(s.Control) >= maxUnixPath {
		t.Fatalf("svtest: control socket path %s is %d bytes, too long for a unix socket (max %d); set TMPDIR to a shorter directory", s.Control, len(s.Control), maxUnixPath-1)
	}
	if err := os.Mkdir(s.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The server refuses a control socket in a directory others can enter.
	if err := os.Mkdir(filepath.Dir(s.Control), 0o700); err != nil {
		t.Fatal(err)
	}
	return s
}

// freePort returns 127.0.0.1:PORT for a port the kernel just handed out.
// Another process could take it before the server binds it; on a test
// machine that is rare enough, and the server's log would say so.
func freePort(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("svtest: picking a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// WriteRun writes the service's run script: the server's output goes to
// Output, then the script execs argv, so that the process the supervisor
// tracks is the server itself and not a shell.
func (s *Service) WriteRun(argv ...string) error {
	if len(argv) == 0 {
		return errors.New("svtest: WriteRun: no command")
	}
	var b strings.Builder
	b.WriteString("#!/bin/sh\n")
	fmt.Fprintf(&b, "exec >>%s 2>&1\n", shellQuote(s.Output))
	b.WriteString("exec")
	for _, a := range argv {
		b.WriteString(" " + shellQuote(a))
	}
	b.WriteString("\n")
	// Write and rename, so that a supervisor never runs half a script.
	tmp := filepath.Join(s.Dir, ".run.tmp")
	if err := os.WriteFile(tmp, []byte(b.String()), 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir, "run")); err != nil {
		return err
	}
	s.argv = argv
	return nil
}

// WriteNotificationFD turns on s6's readiness protocol for the service:
// s6-supervise gives ./run a pipe at descriptor fd and marks the service
// ready when a newline comes through it (s6-svc -wU and -wR wait for
// that). The server must write it, as baton does on Ready when it finds
// the file; daemontools and runit ignore the file.
func (s *Service) WriteNotificationFD(fd int) error {
	return os.WriteFile(filepath.Join(s.Dir, "notification-fd"), []byte(strconv.Itoa(fd)+"\n"), 0o644)
}

// shellQuote quotes s for sh: inside single quotes, where only a single
// quote needs care (it ends the quoting, is escaped, and quoting resumes).
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// URL is the server's root URL.
func (s *Service) URL() string { return "http://" + s.Addr + "/" }

// probeTimeout bounds one probe request: the server answers GET / at once,
// so a second means it is not serving.
const probeTimeout = time.Second

// probeClient makes every probe on a new connection, so that each one
// asks the accept queue which process serves now, never a kept-alive
// connection to an older one. Its Transport has no Proxy: probes go
// straight to 127.0.0.1 whatever HTTP_PROXY says.
var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true},
	Timeout:   probeTimeout,
}

// ServingPID asks the server which process answers: GET / and the pid in
// "pid=<pid> gen=<generation>".
func (s *Service) ServingPID(ctx context.Context) (int, error) {
	pid, _, err := s.Serving(ctx)
	return pid, err
}

// Serving asks the server which process and which generation answer.
func (s *Service) Serving(ctx context.Context) (pid, gen int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL(), nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1024))
	if err != nil {
		return 0, 0, fmt.Errorf("GET %s: reading the body: %w", s.URL(), err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("GET %s: %s: %q", s.URL(), resp.Status, body)
	}
	for _, f := range strings.Fields(string(body)) {
		if v, ok := strings.CutPrefix(f, "pid="); ok {
			pid, _ = strconv.Atoi(v)
		}
		if v, ok := strings.CutPrefix(f, "gen="); ok {
			gen, _ = strconv.Atoi(v)
		}
	}
	if pid <= 0 || gen <= 0 {
		return 0, 0, fmt.Errorf("GET %s: no pid=<n> gen=<n> in %q", s.URL(), body)
	}
	return pid, gen, nil
}

// PIDFromFile returns the pid in PIDFile.
func (s *Service) PIDFromFile() (int, error) {
	b, err := os.ReadFile(s.PIDFile)
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("svtest: pid file %s: %q is not a pid", s.PIDFile, b)
	}
	return pid, nil
}

// Refused returns nil if a connection to Addr is refused: nothing listens
// there, not even a listener nobody accepts on. Otherwise it says what
// happened instead.
func (s *Service) Refused() error {
	c, err := net.DialTimeout("tcp", s.Addr, probeTimeout)
	if err == nil {
		c.Close()
		return fmt.Errorf("connect to %s succeeded", s.Addr)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil
	}
	return fmt.Errorf("connect to %s: %w; want connection refused", s.Addr, err)
}

// tail returns at most the last n bytes of the file at path, for logs.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > n {
		f.Seek(fi.Size()-n, io.SeekStart)
	}
	b, _ := io.ReadAll(f)
	if len(b) == 0 {
		return "(empty)"
	}
	return string(b)
}
