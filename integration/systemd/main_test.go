package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The demo server and the baton command, built once for all tests by
// TestMain: the binaries' paths, or why there are none.
var (
	serverBin      string
	serverBuildErr error
	batonBin       string
	batonBuildErr  error
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(envProbe); mode != "" {
		os.Exit(runProbe(mode)) // a service in a container: see probe_test.go
	}
	dir, err := os.MkdirTemp("", "baton-integration-systemd-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration/systemd: %v\n", err)
		os.Exit(2)
	}
	serverBin, serverBuildErr = build(dir, "server", "./examples/httpserver")
	batonBin, batonBuildErr = build(dir, "baton", "./cmd/baton")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// build builds the main package pkg of the module into dir/name and
// returns its path. CGO_ENABLED=0 makes a static binary: it runs in the
// container whatever libc the host and the rootfs have.
func build(dir, name, pkg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, name)
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, pkg)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -o %s %s in %s: %w\n%s", bin, pkg, root, err, out)
	}
	fmt.Fprintf(os.Stderr, "integration/systemd: built %s in %v\n", pkg, time.Since(start).Round(time.Millisecond))
	return bin, nil
}

// moduleRoot asks the go command where the main module is, rather than
// counting directories up from this one.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not in a module")
	}
	root := filepath.Dir(gomod)
	if _, err := os.Stat(filepath.Join(root, "examples", "httpserver")); err != nil {
		return "", fmt.Errorf("module at %s has no examples/httpserver: %w", root, err)
	}
	return root, nil
}

// server returns the demo server's path, or fails t.
func server(t *testing.T) string {
	t.Helper()
	if serverBuildErr != nil {
		t.Fatalf("building the demo server: %v", serverBuildErr)
	}
	return serverBin
}

// baton returns the baton command's path, or fails t.
func baton(t *testing.T) string {
	t.Helper()
	if batonBuildErr != nil {
		t.Fatalf("building cmd/baton: %v", batonBuildErr)
	}
	return batonBin
}
