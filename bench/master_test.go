//go:build linux

package bench

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// masterSettle is how long the master sits after its worker said ready
// before its RSS is read: the master hears READY=1 a moment after the
// worker prints its line, and is idle only once it has.
const masterSettle = 250 * time.Millisecond

// BenchmarkIdleMaster measures the resident memory of the master of
// "baton run" (package supervisor), idle with one worker: the cost of the
// master topology beside a library user's own. See doc.go.
func BenchmarkIdleMaster(b *testing.B) {
	bin := buildBaton(b)
	b.Run("cmd=baton-run", func(b *testing.B) {
		var master, worker int64
		for b.Loop() {
			m, w := masterRSS(b, bin)
			master += m
			worker += w
		}
		b.ReportMetric(float64(master)/float64(b.N), "master-rss-bytes")
		b.ReportMetric(float64(worker)/float64(b.N), "worker-rss-bytes")
		// The loop time is process starts: noise, not a result.
		b.ReportMetric(0, "ns/op")
	})
}

// buildBaton builds cmd/baton, the baton next to this module (the replace
// directive), into a temporary directory, with the go command that runs
// the benchmark (go test sets GOROOT's bin first in PATH).
func buildBaton(b *testing.B) string {
	goTool, err := exec.LookPath("go")
	if err != nil {
		b.Skipf("no go command to build cmd/baton with: %v", err)
	}
	bin := filepath.Join(b.TempDir(), "baton")
	cmd := exec.Command(goTool, "build", "-o", bin, "github.com/batonhq/baton/cmd/baton")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build cmd/baton: %v\n%s", err, out)
	}
	return bin
}

// masterRSS starts "baton run" with one TCP socket and the idle helper
// (with package baton, which says READY=1 to the master) as its worker,
// and returns the VmRSS of both once the worker has been ready for
// masterSettle.
func masterRSS(b *testing.B, bin string) (master, worker int64) {
	dir := b.TempDir()
	// The master wants its control socket's directory closed to others.
	if err := os.Chmod(dir, 0o700); err != nil {
		b.Fatal(err)
	}
	args := []string{bin, "run",
		"--listen", "tcp://127.0.0.1:0",
		"--control", filepath.Join(dir, "control.sock"),
		"--", os.Args[0]}
	// The master logs every step on stderr: kept in a file, shown if the
	// benchmark fails.
	log, err := os.Create(filepath.Join(dir, "stderr"))
	if err != nil {
		b.Fatal(err)
	}
	defer log.Close()
	b.Cleanup(func() {
		if b.Failed() {
			out, _ := os.ReadFile(log.Name())
			b.Logf("stderr of baton run:\n%s", out)
		}
	})
	c := startProgram(b, bin, args, helperEnv("idle", []string{envLib + "=baton"}), log)
	if word(c.first) != "ready" || field(c.first, "pid") == 0 {
		b.Fatalf("baton run (pid %d): its worker said %q, want \"ready pid=P\"", c.cur, c.first)
	}
	time.Sleep(masterSettle)
	master, err = vmRSS(c.cur)
	if err != nil {
		b.Fatal(err)
	}
	worker, err = vmRSS(field(c.first, "pid"))
	if err != nil {
		b.Fatal(err)
	}
	c.stop()
	return master, worker
}
