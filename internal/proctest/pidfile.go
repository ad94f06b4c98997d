//go:build linux

package proctest

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ReadPIDFile returns the pid a PID file names, 0 if it cannot be read or
// names none. baton replaces the file by rename, so it never reads half
// written.
func ReadPIDFile(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 1 {
		return 0
	}
	return pid
}

// WaitPIDFile waits up to d for the PID file at path to name a pid other
// than old (0: any), and returns it; the test fails if none comes. The
// file is written by another process, which tells us nothing: the wait
// looks every 10 ms, as an operator's tooling would.
func WaitPIDFile(tb testing.TB, path string, old int, d time.Duration) int {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		if pid := ReadPIDFile(path); pid != 0 && pid != old {
			return pid
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the PID file %s still names %d after %v", path, ReadPIDFile(path), d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
