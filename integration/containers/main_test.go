//go:build linux

package containers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// envRequire turns a missing prerequisite from a skipped test into a
// failed one; "make test" sets it to 1, so that CI cannot pass without
// having run these tests.
const envRequire = "BATON_REQUIRE_INTEGRATION"

// buildTimeout bounds the builds of TestMain: a cold build cache on a
// slow machine takes a minute or two, a warm one a few seconds.
const buildTimeout = 5 * time.Minute

// The static binaries TestMain builds, in rootfs/bin: the root file
// system of every container the tests start, and what the host-side
// tests run too.
var (
	rootfs     string // the container's root: bin/ and nothing else
	batonBin   string // ./cmd/baton
	serverBin  string // ./examples/httpserver, the reference server
	workerBin  string // ./integration/containers/internal/worker
	greeterBin string // ./examples/kubernetes
	moduleDir  string // the module's root, where go.mod is
)

func TestMain(m *testing.M) { os.Exit(testMain(m)) }

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "baton-containers-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	if moduleDir, err = moduleRoot(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// No image and no cache of one: the root file system is a directory
	// of three static binaries, built afresh by every run, so it always
	// matches the source. Go's build cache makes that a few seconds; a
	// cached rootfs would only add the question of when it is stale.
	rootfs = filepath.Join(dir, "rootfs")
	bin := filepath.Join(rootfs, "bin")
	batonBin, serverBin = filepath.Join(bin, "baton"), filepath.Join(bin, "server")
	workerBin, greeterBin = filepath.Join(bin, "worker"), filepath.Join(bin, "greeter")
	for _, b := range []struct{ path, pkg string }{
		{batonBin, "./cmd/baton"},
		{serverBin, "./examples/httpserver"},
		{workerBin, "./integration/containers/internal/worker"},
		{greeterBin, "./examples/kubernetes"},
	} {
		if err := buildStatic(ctx, b.path, b.pkg); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	// Mount points the runtime needs; everything else it mounts itself
	// (/proc, /dev, /sys) or, with --read-only, as tmpfs (/tmp, /run).
	for _, d := range []string{"proc", "dev", "sys", "tmp", "run", "etc"} {
		if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	// /tmp as in any image (distroless's too): everyone's, sticky. With
	// --read-only, podman mounts a tmpfs there with this mode
	// (tmpcopyup), and baton, a non-root user, makes its control
	// socket's directory in it.
	if err := os.Chmod(filepath.Join(rootfs, "tmp"), os.ModeSticky|0o777); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	// And where the example's image has them (examples/kubernetes's
	// Containerfile), so that a container runs the Deployment's command
	// line as it is.
	for _, l := range []struct{ bin, at string }{{batonBin, "baton"}, {greeterBin, "greeter"}} {
		if err := os.Link(l.bin, filepath.Join(rootfs, l.at)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
	}
	setPodmanStore(filepath.Join(dir, "podman"))
	return m.Run()
}

// buildStatic builds the main package pkg, relative to the module root,
// to path, with CGO_ENABLED=0: a binary that needs no libc, so that it
// runs in a root file system that holds nothing else.
func buildStatic(ctx context.Context, path, pkg string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", path, pkg)
	cmd.Dir = moduleDir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("CGO_ENABLED=0 go build -o %s %s in %s: %w\n%s", path, pkg, moduleDir, err, out)
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

// requireIntegration fails the test when make test asked for every test
// to run (BATON_REQUIRE_INTEGRATION=1), and skips it, saying why,
// otherwise.
func requireIntegration(t *testing.T, why string) {
	t.Helper()
	if os.Getenv(envRequire) == "1" {
		t.Fatalf("cannot run: %s (%s=1)", why, envRequire)
	}
	t.Skipf("skipped: %s", why)
}
