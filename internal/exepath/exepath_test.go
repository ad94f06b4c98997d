//go:build unix

package exepath

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// tree makes dir/releases/1/srv (executable), dir/current -> releases/1,
// dir/data (not executable), dir/sub/ (a directory); it returns dir.
func tree(t *testing.T) string {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "releases", "1"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "releases", "1", "srv"), []byte("#!/bin/sh\n"), 0o755)
	os.Symlink(filepath.Join("releases", "1"), filepath.Join(dir, "current"))
	os.WriteFile(filepath.Join(dir, "data"), []byte("x"), 0o644)
	os.Mkdir(filepath.Join(dir, "sub"), 0o755)
	return dir
}

func TestResolve(t *testing.T) {
	dir := tree(t)
	t.Setenv("PATH", filepath.Join(dir, "releases", "1")+":/nonexistent")
	for _, tc := range []struct{ name, wd, want string }{
		{"/usr/bin/env", "/opt", "/usr/bin/env"},
		{"/usr//bin/../bin/env", "/opt", "/usr/bin/env"},
		{"bin/srv", "/opt", "/opt/bin/srv"},
		{"./srv", "/opt", "/opt/srv"},
		{"../srv", "/opt/app", "/opt/srv"},
		// Symlinks are kept: current/srv, not releases/1/srv.
		{"current/srv", dir, filepath.Join(dir, "current", "srv")},
		{filepath.Join(dir, "current", "srv"), "/", filepath.Join(dir, "current", "srv")},
		// No slash: PATH.
		{"srv", "/opt", filepath.Join(dir, "releases", "1", "srv")},
	} {
		if got, err := Resolve(tc.name, tc.wd); err != nil || got != tc.want {
			t.Errorf("Resolve(%q, %q) = %q, %v; want %q", tc.name, tc.wd, got, err, tc.want)
		}
	}
	if got, err := Resolve("no-such-program-anywhere", "/opt"); !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("Resolve(not in PATH) = %q, %v; want exec.ErrNotFound", got, err)
	}
	if got, err := Resolve("", "/opt"); err == nil {
		t.Errorf("Resolve(\"\") = %q, nil; want an error", got)
	}
	// A relative PATH entry is refused, as os/exec does.
	t.Setenv("PATH", ".")
	t.Chdir(filepath.Join(dir, "releases", "1"))
	if got, err := Resolve("srv", "/opt"); !errors.Is(err, exec.ErrDot) {
		t.Errorf("Resolve through PATH=. = %q, %v; want exec.ErrDot", got, err)
	}
	// wd "" is the working directory.
	if got, err := Resolve("./srv", ""); err != nil || got != filepath.Join(dir, "releases", "1", "srv") {
		t.Errorf("Resolve(./srv, \"\") = %q, %v; want it in the working directory", got, err)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	dir := tree(t)
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "releases", "1", "srv"), ""},
		{filepath.Join(dir, "current", "srv"), ""},
		{filepath.Join(dir, "data"), "data is not executable: permission denied"},
		{filepath.Join(dir, "sub"), "sub is not a regular file"},
	} {
		err := Check(tc.path)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasSuffix(err.Error(), tc.want)) {
			t.Errorf("Check(%s) = %v; want %q", tc.path, err, tc.want)
		}
	}
	if err := Check(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Check(missing) = %v; want fs.ErrNotExist", err)
	}
}

func TestRunning(t *testing.T) {
	t.Parallel()
	p, err := Running()
	if err != nil {
		t.Fatalf("Running() = %q, %v", p, err)
	}
	want, _ := os.Executable()
	if real, err := filepath.EvalSymlinks(p); err != nil || real != want {
		t.Errorf("Running() = %q, which leads to %q, %v; want the test binary %s", p, real, err, want)
	}
}

// Self is os.Args[0] while it exists, and the running binary once it is
// gone.
func TestSelf(t *testing.T) {
	arg0 := os.Args[0]
	t.Cleanup(func() { os.Args[0] = arg0 })
	dir := tree(t)
	os.Args[0] = "current/srv"
	if p, err := Self(dir); err != nil || p != filepath.Join(dir, "current", "srv") {
		t.Errorf("Self with os.Args[0] %q = %q, %v; want %s", os.Args[0], p, err, filepath.Join(dir, "current", "srv"))
	}
	os.Args[0] = "./data"
	if p, err := Self(dir); err == nil || p != filepath.Join(dir, "data") {
		t.Errorf("Self with a non-executable os.Args[0] = %q, %v; want it named and refused", p, err)
	}
	os.Args[0] = "./gone"
	running, _ := Running()
	if p, err := Self(dir); err != nil || p != running {
		t.Errorf("Self with os.Args[0] gone = %q, %v; want the running binary %s", p, err, running)
	}
}
