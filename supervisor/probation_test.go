//go:build linux

package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/supervisor"
)

// probationWindow is the --probation of the probation faults: longer than
// the latest fault (500ms after ready) with room for a slow machine.
const probationWindow = 1500 * time.Millisecond

var probationRE = regexp.MustCompile(`died (\d+) ms into probation: `)

// TestFaultMasterProbation: the new generation exits, or is killed, 100ms
// or 500ms after it said it was ready, under load, with a probation and
// without one.
//
// With a probation, the old generation was never told to stop: it serves
// on, the reload fails naming the fault, nothing restarts. Without one,
// the old generation drains as soon as the new one is ready, and the
// master restarts the crashed worker (today's behaviour). Either way the
// master holds the sockets, so no connection is refused; what the dying
// worker had accepted is lost — at most one request per client, as each
// client has one request in flight or one keep-alive connection at a
// time: 16 clients in each of 2 modes, so 32, and only resets or ends of
// file (see rig.bounded). The figures of both are logged side by side.
func TestFaultMasterProbation(t *testing.T) {
	var rows []string
	for _, probation := range []bool{true, false} {
		for _, fault := range []string{"exit", "kill"} {
			for _, ms := range []int{100, 500} {
				name := fmt.Sprintf("%s-%dms/probation=%v", fault, ms, probation)
				t.Run(name, func(t *testing.T) {
					rep := probationFault(t, probation, fault, ms)
					rows = append(rows, fmt.Sprintf("%-26s %6d requests  %3d failed  %s", name, rep.Requests, rep.FailedRequests, failureKinds(rep)))
				})
			}
		}
	}
	t.Logf("the new generation dies after ready, probation %v against none:\n%s", probationWindow, strings.Join(rows, "\n"))
}

func probationFault(t *testing.T, probation bool, fault string, ms int) *loadgen.Report {
	var flags []string
	if probation {
		flags = []string{"--probation", probationWindow.String()}
	}
	r := newRig(t, rigConfig{flags: flags})
	status := "exit status 6"
	if fault == "kill" {
		status = "signal: killed"
	}
	rep := r.load(false, func(ctx context.Context) error {
		r.setModes(fmt.Sprintf("ready-%s-%d", fault, ms), "ok")
		if !probation {
			res, err := r.reloadOK(ctx)
			if err != nil {
				return err
			}
			if res.Gen != 2 {
				return fmt.Errorf("reload: generation %d; want 2", res.Gen)
			}
			_, err = r.waitState(ctx, "generation 3 serving", serving(3))
			return err
		}
		if err := r.reloadFails(ctx, "ms into probation: "+status, ""); err != nil {
			return err
		}
		st, err := r.m.status()
		if err != nil {
			return err
		}
		if len(st.Generations) != 1 || st.Generations[0].Gen != 1 || st.Generations[0].State != "serving" || st.State != "serving" {
			return fmt.Errorf("after the failed probation: %+v; want generation 1 alone, serving", st)
		}
		if st.Restarts != 0 || st.Upgrades.Failed != 1 || st.Upgrades.OK != 0 || !strings.Contains(st.Upgrades.LastError, "into probation") {
			return fmt.Errorf("after the failed probation: restarts %d, upgrades %+v; want 0 restarts, 1 failed upgrade naming the probation", st.Restarts, st.Upgrades)
		}
		return nil
	})
	r.bounded(rep, 32)
	st := r.settled()
	if probation {
		out := r.m.output()
		if m := probationRE.FindStringSubmatch(out); m == nil {
			t.Errorf("the master's output names no death on probation")
		} else if n, _ := strconv.Atoi(m[1]); n < ms {
			// A lower bound on a deliberate delay: it died no sooner
			// than it was made to.
			t.Errorf("died %d ms into probation; it was made to die %d ms after ready", n, ms)
		}
		r.logHas(`msg="generation on probation"`, `msg="generation died on probation: the old one serves on"`)
		if st.Generations[0].Gen != 1 {
			t.Errorf("generation %d serves; want 1, the one that never stopped", st.Generations[0].Gen)
		}
	} else if st.Restarts != 1 || st.Generations[0].Gen != 3 {
		t.Errorf("after the crash: restarts %d, generation %d serving; want 1 restart, generation 3", st.Restarts, st.Generations[0].Gen)
	}
	r.stop(0)
	return rep
}

// failureKinds names the failures of rep, by mode.
func failureKinds(rep *loadgen.Report) string {
	var parts []string
	for _, md := range rep.Modes {
		f := md.Failures
		if f.Total() > 0 {
			parts = append(parts, fmt.Sprintf("%s: %d reset, %d eof, %d refused, %d timeout", md.Mode, f.Reset, f.EOF, f.Refused, f.Timeout))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, "; ")
}

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
