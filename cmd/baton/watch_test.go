package main

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// A watched file that is replaced (renamed over, as a deploy does) or
// rewritten causes one reload once it has settled; one that is removed, or
// left alone, causes none.
func TestWatchFiles(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "app")
	if err := os.WriteFile(bin, []byte("v1"), 0o755); err != nil {
		t.Fatal(err)
	}
	var reloads atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		watchFiles(ctx, []string{bin}, 10*time.Millisecond, func(context.Context) error {
			reloads.Add(1)
			return nil
		}, t.Logf)
	}()
	defer func() { cancel(); <-done }()

	waitFor := func(n int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for reloads.Load() != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d reloads; want %d", reloads.Load(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // and no more than that
		if got := reloads.Load(); got != n {
			t.Fatalf("%d reloads; want exactly %d", got, n)
		}
	}

	time.Sleep(100 * time.Millisecond)
	waitFor(0) // nothing changed

	// A new release renamed into place.
	tmp := filepath.Join(dir, ".app.new")
	if err := os.WriteFile(tmp, []byte("v2, longer"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, bin); err != nil {
		t.Fatal(err)
	}
	waitFor(1)

	// Removed: not a change by itself; put back different: one reload.
	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	waitFor(1)
	if err := os.WriteFile(bin, []byte("v3, longer still"), 0o755); err != nil {
		t.Fatal(err)
	}
	waitFor(2)
}
