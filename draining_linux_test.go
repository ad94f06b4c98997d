package baton

import (
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/procfs"
)

// A generation is signalled only if its pid still names the process it
// named: same start time. A pid reused by another process is left alone.
func TestStopGenerationChecksStartTime(t *testing.T) {
	t.Parallel()
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer cmd.Process.Kill()
	st, err := procfs.ReadStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	id := genID{Gen: 3, PID: st.PID, Start: st.StartTime}

	reused := id
	reused.Start++ // another process, as far as the lineage can tell
	if err := stopGeneration(reused); !errors.Is(err, errGone) {
		t.Errorf("stopGeneration(a pid with another start time) = %v; want errGone", err)
	}
	select {
	case err := <-exited:
		t.Fatalf("the process whose pid was reused was signalled: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	if !stillRuns(id) || stillRuns(reused) {
		t.Errorf("stillRuns(same start) = %v, stillRuns(other start) = %v; want true, false", stillRuns(id), stillRuns(reused))
	}

	if err := stopGeneration(id); err != nil {
		t.Fatalf("stopGeneration(%+v) = %v", id, err)
	}
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("the generation ended with %v; want HurrySignal", err)
		}
		if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != HurrySignal {
			t.Errorf("the generation ended with %v; want HurrySignal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the generation did not end within 10s of stopGeneration")
	}
	if err := stopGeneration(id); !errors.Is(err, errGone) {
		t.Errorf("stopGeneration of a generation that exited = %v; want errGone", err)
	}
}

func TestEstablishedConnsOfThisProcess(t *testing.T) {
	t.Parallel()
	if n := establishedConns(1 << 30); n != -1 {
		t.Errorf("establishedConns(no such pid) = %d; want -1", n)
	}
}
