//go:build linux

package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/supervisor"
)

// TestReloadDuringProbation: a probation is part of its reload, so a
// reload asked meanwhile is refused with reload_in_progress, and a
// SIGHUP makes one more reload after it.
func TestReloadDuringProbation(t *testing.T) {
	r := newRig(t, rigConfig{flags: []string{"--probation", "2s"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() {
		res, err := r.reloadOK(ctx)
		if err == nil && res.Gen != 2 {
			err = fmt.Errorf("the first reload made generation %d; want 2", res.Gen)
		}
		first <- err
	}()
	if _, err := r.waitState(ctx, "generation 2 on probation", func(st *supervisor.Status) bool {
		return len(st.Generations) == 2 && st.Generations[1].State == supervisor.StateProbation && st.State == supervisor.StateReloading
	}); err != nil {
		t.Fatal(err)
	}
	resp, err := supervisor.Call(ctx, r.m.control, supervisor.CmdReload)
	if err != nil || resp.OK || !errors.Is(resp.Err(), supervisor.ErrReloadInProgress) {
		t.Errorf("a reload during the probation: %+v, %v; want refused with %v", resp, err, supervisor.ErrReloadInProgress)
	}
	r.m.cmd.Process.Signal(syscall.SIGHUP)
	if err := <-first; err != nil {
		t.Fatal(err)
	}
	// The SIGHUP's reload follows, with its own probation.
	if _, err := r.waitState(ctx, "generation 3 serving", serving(3)); err != nil {
		t.Fatal(err)
	}
	r.logHas(`msg="SIGHUP during a reload: one more reload follows it"`)
	r.stop(0)
}
