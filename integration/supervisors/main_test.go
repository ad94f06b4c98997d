//go:build linux

package supervisors

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/svtest"
)

// serverBin is the demo server, built by TestMain for every test;
// faultBin the fault-injecting server of faults_test.go
// (internal/faultserver).
var serverBin, faultBin string

// buildTimeout bounds the one build of the server: a cold build cache on a
// slow machine takes a minute or two, a warm one a second.
const buildTimeout = 5 * time.Minute

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	if err := svtest.BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	dir, err := os.MkdirTemp("", "baton-supervisors-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	serverBin = filepath.Join(dir, "server")
	faultBin = filepath.Join(dir, faultComm)
	for _, b := range []struct{ path, pkg string }{
		{serverBin, "./examples/httpserver"},
		{faultBin, "./integration/supervisors/internal/faultserver"},
	} {
		if err := buildServer(b.path, b.pkg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	return m.Run()
}

// buildServer builds the main package pkg, relative to the module root, to
// path.
func buildServer(path, pkg string) error {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build -o %s %s in %s: %w\n%s", path, pkg, root, err, out)
	}
	return nil
}

// moduleRoot asks the go command where this package's go.mod is.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("go env GOMOD: %q: the tests do not run inside the baton module", gomod)
	}
	return filepath.Dir(gomod), nil
}
