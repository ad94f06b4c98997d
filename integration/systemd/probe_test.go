package systemd

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/batonhq/baton/systemd"
)

// The probe is this test binary run as a service in the container, with
// envProbe naming what it does: package systemd's Notifier in front of a
// real manager, each mode one question to it. It answers through the unit
// itself — its StatusText, its MainPID, how long a reload takes — so that
// the test reads the answer with systemctl and never polls a file.
const (
	envProbe = "BATON_NOTIFY_PROBE"
	// envProbeUnit names the probe's own unit, for systemctl show.
	envProbeUnit = "BATON_NOTIFY_PROBE_UNIT"
)

// Probe modes.
const (
	// probeReload: READY=1, then on each SIGHUP Reloading (RELOADING=1
	// with MONOTONIC_USEC=), probeReloadTime of work, Ready.
	probeReload = "reload"
	// probeReloadBare: the same, but RELOADING=1 alone, as a notifier
	// that forgets MONOTONIC_USEC= would send it.
	probeReloadBare = "reload-bare"
	// probeBarrier: STATUS=, Barrier, then asks systemd whether it has
	// the status already, and says so in READY=1's STATUS=.
	probeBarrier = "barrier"
	// probeMainPIDChild: a child process (not the main one) sends
	// MAINPID=<its pid> and a barrier; the main process then reports,
	// with READY=1, what systemd calls the main process.
	probeMainPIDChild = "mainpid-child"
	// probeMainPIDChildAccess: the same after the main process sent
	// NOTIFYACCESS=all (systemd 254 and later).
	probeMainPIDChildAccess = "mainpid-child-notifyaccess"
	// probeChild is the child of the two above.
	probeChild = "child"
)

// probeReloadTime is how long a reload of the probe works between
// RELOADING=1 and READY=1: the lower bound of a reload that waits.
const probeReloadTime = 500 * time.Millisecond

// runProbe runs the probe in mode and returns its exit code. A failure is
// told to systemd in STATUS= as well as on stderr (the journal), so that
// the test sees it whatever state the unit is in.
func runProbe(mode string) int {
	n, err := systemd.NewNotifier()
	if err == nil && n == nil {
		err = fmt.Errorf("no NOTIFY_SOCKET")
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: %v\n", err)
		return 2
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "probe %s: %v\n", mode, err)
		n.Send("STATUS=probe failed: " + strings.ReplaceAll(err.Error(), "\n", " "))
		return 1
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)

	switch mode {
	case probeReload, probeReloadBare:
		if err := n.Ready(); err != nil {
			return fail(err)
		}
		for sig := range sigs {
			if sig == syscall.SIGTERM {
				n.Stopping()
				return 0
			}
			if mode == probeReload {
				err = n.Reloading()
			} else {
				err = n.Send("RELOADING=1")
			}
			if err != nil {
				return fail(err)
			}
			time.Sleep(probeReloadTime) // the reload's work
			if err := n.Send("READY=1", "STATUS=reloaded"); err != nil {
				return fail(err)
			}
		}

	case probeBarrier:
		want := fmt.Sprintf("before the barrier, pid %d", os.Getpid())
		if err := n.Status(want); err != nil {
			return fail(err)
		}
		start := time.Now()
		if err := n.Barrier(0); err != nil {
			return fail(err)
		}
		took := time.Since(start)
		got, err := showProperty("StatusText")
		if err != nil {
			return fail(err)
		}
		if got != want {
			return fail(fmt.Errorf("Barrier returned, but systemd's StatusText is %q, not %q yet", got, want))
		}
		if err := n.Send("READY=1", fmt.Sprintf("STATUS=barrier ok in %v", took.Round(time.Microsecond))); err != nil {
			return fail(err)
		}
		waitTerm(sigs)
		n.Stopping()

	case probeMainPIDChild, probeMainPIDChildAccess:
		if mode == probeMainPIDChildAccess {
			if err := n.Send("NOTIFYACCESS=all"); err != nil {
				return fail(err)
			}
		}
		child, err := startProbeChild()
		if err != nil {
			return fail(err)
		}
		defer func() {
			child.Process.Signal(syscall.SIGTERM)
			child.Wait()
		}()
		main, err := showProperty("MainPID")
		if err != nil {
			return fail(err)
		}
		// What the test reads: which pid systemd calls main after the
		// child claimed it.
		status := fmt.Sprintf("main=%s self=%d child=%d", main, os.Getpid(), child.Process.Pid)
		if err := n.Send("READY=1", "STATUS="+status); err != nil {
			return fail(err)
		}
		waitTerm(sigs)

	case probeChild:
		if err := n.MainPID(os.Getpid()); err != nil {
			return fail(err)
		}
		if err := n.Barrier(0); err != nil {
			return fail(err)
		}
		fmt.Println("claimed")
		waitTerm(sigs)

	default:
		return fail(fmt.Errorf("unknown mode %q", mode))
	}
	return 0
}

// startProbeChild starts this binary as probeChild and returns once it has
// sent MAINPID= and its barrier has returned: systemd has dealt with the
// claim, whatever it made of it.
func startProbeChild() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), envProbe+"="+probeChild)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || line != "claimed\n" {
		cmd.Process.Kill()
		cmd.Wait()
		return nil, fmt.Errorf("the child said %q (%v); want claimed", line, err)
	}
	return cmd, nil
}

// showProperty asks systemd for a property of the probe's unit.
func showProperty(prop string) (string, error) {
	unit := os.Getenv(envProbeUnit)
	out, err := exec.Command("systemctl", "show", "--value", "-p", prop, unit).Output()
	if err != nil {
		return "", fmt.Errorf("systemctl show -p %s %s: %w", prop, unit, err)
	}
	return strings.TrimSpace(string(out)), nil
}

// waitTerm waits for SIGTERM, the stop; a probe that is never stopped is
// killed with the container.
func waitTerm(sigs <-chan os.Signal) {
	for sig := range sigs {
		if sig == syscall.SIGTERM {
			return
		}
	}
}

// probeStatus parses the probeMainPIDChild status, "main=M self=S
// child=C".
func probeStatus(s string) (main, self, child int, err error) {
	_, err = fmt.Sscanf(s, "main=%d self=%d child=%d", &main, &self, &child)
	return
}
