//go:build linux

package baton_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/batonhq/baton/internal/proctest"
)

// copyTestBinary copies the running test binary to path, executable by
// all (see proctest.CopyExecutable for why cp writes it).
func copyTestBinary(t *testing.T, path string) {
	t.Helper()
	proctest.CopyExecutable(t, "/proc/"+strconv.Itoa(os.Getpid())+"/exe", path)
}

// startFrom starts the server helper from exe with argv[0] and working
// directory dir, the way a shell or a supervisor would.
func startFrom(t *testing.T, exe, argv0, dir string, cfg serverConfig) *server {
	t.Helper()
	cfg.Dir = t.TempDir()
	cmd := &exec.Cmd{Path: exe, Args: []string{argv0}, Dir: dir}
	cmd.Env = append(os.Environ(), cfg.env())
	s := &server{t: t, proc: proctest.StartCommand(t, "server", cmd), cfg: cfg, dir: cfg.Dir}
	s.waitReady(1)
	return s
}

func (s *server) exe() string {
	s.t.Helper()
	body, err := s.get("/")
	if err != nil {
		s.t.Fatal(err)
	}
	return proctest.Field(body, "exe")
}

// A relative argv[0] is resolved against the directory the process started
// in, even after it changed directory.
func TestExecutableRelativeArgv0AfterChdir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	copyTestBinary(t, filepath.Join(dir, "bin", "server"))
	s := startFrom(t, filepath.Join(dir, "bin", "server"), "./bin/server", dir, serverConfig{Chdir: "/"})
	s.mustUpgrade()
	if got, want := s.exe(), filepath.Join(dir, "bin", "server"); got != want {
		t.Errorf("successor runs %s, want %s", got, want)
	}
	s.stop()
}

// With a "current -> releases/N" layout the successor runs the release
// current points at when Upgrade is called: symlinks are not resolved early.
func TestExecutableFollowsCurrentSymlink(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	r1, r2 := filepath.Join(dir, "releases", "1", "server"), filepath.Join(dir, "releases", "2", "server")
	copyTestBinary(t, r1)
	copyTestBinary(t, r2)
	current := filepath.Join(dir, "current")
	if err := os.Symlink(filepath.Join("releases", "1"), current); err != nil {
		t.Fatal(err)
	}
	s := startFrom(t, filepath.Join(current, "server"), filepath.Join(current, "server"), dir, serverConfig{})
	if got := s.exe(); got != r1 {
		t.Fatalf("generation 1 runs %s, want %s", got, r1)
	}
	// Deploy release 2: swap the link atomically, then upgrade.
	tmp := filepath.Join(dir, "current.tmp")
	if err := os.Symlink(filepath.Join("releases", "2"), tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, current); err != nil {
		t.Fatal(err)
	}
	s.mustUpgrade()
	if got := s.exe(); got != r2 {
		t.Errorf("after switching current to release 2, the successor runs %s", got)
	}
	s.stop()
}

// When the binary was deleted (go run does this; so may a deploy), the
// running binary is used.
func TestExecutableDeleted(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	exe := filepath.Join(dir, "server")
	copyTestBinary(t, exe)
	s := startFrom(t, exe, exe, dir, serverConfig{})
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	s.mustUpgrade()
	body, err := s.get("/")
	if err != nil {
		t.Fatal(err)
	}
	// /proc/PID/exe of a deleted binary reads "<path> (deleted)".
	if !strings.Contains(body, "exe="+exe+" (deleted)") {
		t.Errorf("successor of a deleted binary: GET / = %q, want exe=%s (deleted)", body, exe)
	}
	s.stop()
}
