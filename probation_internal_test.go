//go:build linux || darwin

package baton

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// watchedParent returns a successor's view of a predecessor (a parent
// whose watch reads our end of a socketpair, as after adoption) and the
// predecessor's end to write frames to.
func watchedParent(t *testing.T) (*parent, *net.UnixConn) {
	t.Helper()
	ours, theirs, err := socketpair()
	if err != nil {
		t.Fatal(err)
	}
	fc, err := net.FileConn(theirs)
	theirs.Close()
	if err != nil {
		ours.Close()
		t.Fatal(err)
	}
	p := &parent{pid: 1, conn: fc.(*net.UnixConn), ack: make(chan struct{}), gone: make(chan struct{}), passed: make(chan struct{}), handed: newHandedSet(nil)}
	go p.watch()
	t.Cleanup(func() {
		ours.Close()
		<-p.gone
	})
	return p, ours
}

// closed reports whether c is closed within a second, or at once if
// want is false (a channel that must stay open is looked at after the
// frame that would close it, and what follows it, went by).
func closed(c <-chan struct{}, want bool) bool {
	d := time.Duration(0)
	if want {
		d = 5 * time.Second
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c:
		return true
	case <-t.C:
		return false
	}
}

func sendTestFrame(t *testing.T, c *net.UnixConn, typ byte, body []byte) {
	t.Helper()
	frame, err := encodeFrame(typ, body)
	if err != nil {
		t.Fatal(err)
	}
	if err := sendFrame(c, frame, nil); err != nil {
		t.Fatal(err)
	}
}

func ackBody(t *testing.T, d time.Duration) []byte {
	t.Helper()
	b, err := encodeAck(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The successor's side of a probation: the ack says how long, passed ends
// it; the predecessor's EOF ends it too; anything out of order breaks the
// protocol, and the successor treats the predecessor as gone (its watch
// ends, which the predecessor sees as EOF and so as the successor's end).
func TestParentProbationFrames(t *testing.T) {
	t.Parallel()
	t.Run("passed", func(t *testing.T) {
		t.Parallel()
		p, c := watchedParent(t)
		sendTestFrame(t, c, frameAck, ackBody(t, 2*time.Second))
		if !closed(p.ack, true) || p.probation != 2*time.Second || !p.onProbation() || p.window() != 2*time.Second {
			t.Fatalf("after an ack of 2s: probation %v, on probation %t; want 2s, true", p.probation, p.onProbation())
		}
		sendTestFrame(t, c, framePassed, nil)
		if !closed(p.passed, true) || p.onProbation() {
			t.Fatalf("after passed: on probation %t; want the probation over", p.onProbation())
		}
		if closed(p.gone, false) {
			t.Errorf("the watch ended on a valid passed frame")
		}
	})
	t.Run("predecessor gone", func(t *testing.T) {
		t.Parallel()
		p, c := watchedParent(t)
		sendTestFrame(t, c, frameAck, ackBody(t, time.Minute))
		if !closed(p.ack, true) || !p.onProbation() {
			t.Fatal("not on probation after an ack of 1m")
		}
		c.Close()
		if !closed(p.gone, true) || p.onProbation() {
			t.Fatalf("the predecessor gone: on probation %t; want it over (nobody else serves)", p.onProbation())
		}
		if closed(p.passed, false) {
			t.Errorf("passed closed by the predecessor's EOF")
		}
	})
	t.Run("no probation", func(t *testing.T) {
		t.Parallel()
		p, c := watchedParent(t)
		sendTestFrame(t, c, frameAck, ackBody(t, 0))
		if !closed(p.ack, true) || p.onProbation() {
			t.Fatalf("after an ack of 0: on probation %t; want false", p.onProbation())
		}
	})
	for _, tc := range []struct {
		name   string
		frames func(t *testing.T, c *net.UnixConn)
	}{
		{"passed without a probation", func(t *testing.T, c *net.UnixConn) {
			sendTestFrame(t, c, frameAck, ackBody(t, 0))
			sendTestFrame(t, c, framePassed, nil)
		}},
		{"passed twice", func(t *testing.T, c *net.UnixConn) {
			sendTestFrame(t, c, frameAck, ackBody(t, time.Second))
			sendTestFrame(t, c, framePassed, nil)
			sendTestFrame(t, c, framePassed, nil)
		}},
		{"passed before the ack", func(t *testing.T, c *net.UnixConn) {
			sendTestFrame(t, c, framePassed, nil)
		}},
		{"passed with a body", func(t *testing.T, c *net.UnixConn) {
			sendTestFrame(t, c, frameAck, ackBody(t, time.Second))
			sendTestFrame(t, c, framePassed, []byte{0})
		}},
		{"a version 2 ack (empty)", func(t *testing.T, c *net.UnixConn) {
			sendTestFrame(t, c, frameAck, nil)
		}},
		{"a conn during the probation", func(t *testing.T, c *net.UnixConn) {
			sendTestFrame(t, c, frameAck, ackBody(t, time.Second))
			body, err := encodeConn(connMsg{ID: 1, Name: "x"})
			if err != nil {
				t.Fatal(err)
			}
			// The descriptor: any will do, it is closed on the refusal.
			f, err := os.Open(os.DevNull)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			frame, _ := encodeFrame(frameConn, body)
			rc, _ := f.SyscallConn()
			rc.Control(func(fd uintptr) { err = sendFrame(c, frame, []int{int(fd)}) })
			if err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, c := watchedParent(t)
			tc.frames(t, c)
			if !closed(p.gone, true) {
				t.Fatalf("the watch goes on after %s; want it ended as a protocol error", tc.name)
			}
			// The predecessor sees our end closed.
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil {
				t.Errorf("after %s the successor's end of the link is still open", tc.name)
			}
		})
	}
}

// A probation the ack cannot carry is refused by New, before anything
// else happens.
func TestProbationOutOfRange(t *testing.T) {
	t.Parallel()
	for _, d := range []time.Duration{-time.Second, MaxProbation + time.Millisecond} {
		if u, err := newUpgrader(Options{Probation: d}); err == nil {
			u.Stop()
			t.Errorf("newUpgrader(Probation: %v) = nil error; want it refused", d)
		}
	}
}

// A failed probation is told apart by type, not text: the ChildError
// matches ErrProbationFailed, holds a *ProbationError with the timing,
// and unwraps to the exit status.
func TestProbationErrorTypes(t *testing.T) {
	t.Parallel()
	exit := &exec.ExitError{ProcessState: &os.ProcessState{}}
	err := error(&ChildError{PID: 42, Path: "/bin/app", Err: &ProbationError{After: 103 * time.Millisecond, Probation: 2 * time.Second, Err: exit}})
	if !errors.Is(err, ErrProbationFailed) {
		t.Errorf("errors.Is(%v, ErrProbationFailed) = false", err)
	}
	if errors.Is(err, ErrTimeout) || errors.Is(fmt.Errorf("x: %w", ErrTimeout), ErrProbationFailed) {
		t.Errorf("ErrProbationFailed and ErrTimeout match each other's errors")
	}
	var pe *ProbationError
	if !errors.As(err, &pe) || pe.After != 103*time.Millisecond || pe.Probation != 2*time.Second {
		t.Errorf("errors.As(%v, *ProbationError) = %+v", err, pe)
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee != exit {
		t.Errorf("errors.As(%v, *exec.ExitError) = %v; want the exit status", err, ee)
	}
	want := "baton: successor /bin/app (pid 42) failed on probation: died 103ms after ready, within its probation of 2s: "
	if got := err.Error(); !strings.HasPrefix(got, want) {
		t.Errorf("Error() = %q; want it to start %q", got, want)
	}
}
