package systemd

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/nspawn"
)

// TestNotifier puts package systemd's Notifier in front of real managers,
// systemd 252 and 257, through the probe (probe_test.go): what each
// manager makes of RELOADING=1 with and without MONOTONIC_USEC=, whether
// Barrier returns only once what was sent before it is in effect, and
// whose MAINPID= each NotifyAccess= lets through. The library's handover
// rests on these facts; package systemd's documentation states them.
//
// It runs beside TestSystemd: it puts no load on the machine to speak of,
// and has containers of its own.
func TestNotifier(t *testing.T) {
	t.Parallel()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, release := range []nspawn.Release{nspawn.Bookworm, nspawn.Trixie} {
		t.Run(string(release), func(t *testing.T) {
			t.Parallel()
			c := nspawn.Boot(t, nspawn.Options{Release: release, Unified: true})
			if err := copyFile(exe, filepath.Join(c.Dir, "probe")); err != nil {
				t.Fatalf("copying the test binary into the container's directory: %v", err)
			}
			version, _ := c.Systemctl("--version")
			v, _ := strconv.Atoi(strings.Fields(version + " x 0")[1])
			t.Logf("%s", strings.SplitN(version, "\n", 2)[0])
			p := &prober{t: t, c: c, version: v}

			t.Run("barrier", p.barrier)
			t.Run("mainpid", p.mainPID)
			if v >= 253 {
				t.Run("notify-reload", p.notifyReload)
			}
		})
	}
}

type prober struct {
	t       *testing.T
	c       *nspawn.Container
	version int // systemd's
}

// install installs unit running the probe in mode, with the [Service]
// lines service, and returns a cleanup-registered stop.
func (p *prober) install(t *testing.T, unit, mode, service string) {
	t.Helper()
	text := fmt.Sprintf(`[Unit]
StartLimitIntervalSec=0
[Service]
ExecStart=%s/probe
Environment=%s=%s %s=%s
# The probe is the race-built test binary: without this each of its
# processes sleeps a second before it exits.
Environment=GORACE=atexit_sleep_ms=0
TimeoutStopSec=10s
%s`, nspawn.GuestDir, envProbe, mode, envProbeUnit, unit, service)
	if err := p.c.InstallUnit(unit, text); err != nil {
		t.Fatalf("installing %s: %v", unit, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("journal of %s:\n%s", unit, lastLines(p.c.Journal(unit), 60))
		}
		p.c.Systemctl("stop", unit)
	})
}

func (p *prober) show(t *testing.T, unit string, props ...string) map[string]string {
	t.Helper()
	m, err := p.c.Show(unit, props...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// stopClean stops unit and checks it ended with Result=success and
// nothing left in its cgroup.
func (p *prober) stopClean(t *testing.T, unit string) {
	t.Helper()
	if _, err := p.c.Systemctl("stop", unit); err != nil {
		t.Fatal(err)
	}
	if m := p.show(t, unit, "Result", "ActiveState"); m["Result"] != "success" || m["ActiveState"] != "inactive" {
		t.Errorf("after systemctl stop %s: %v; want Result=success, inactive", unit, m)
	}
	if pids, err := p.c.UnitPIDs(unit); err != nil || len(pids) > 0 {
		t.Errorf("processes left in %s after stop: %v (%v)", unit, pids, err)
	}
}

// barrier: when Barrier returns, the STATUS= sent before it is what
// systemd shows. The probe checks it from inside and says so with
// READY=1; "probe failed: …" otherwise.
func (p *prober) barrier(t *testing.T) {
	const unit = "probe-barrier.service"
	p.install(t, unit, probeBarrier, "Type=notify\nTimeoutStartSec=20s\n")
	if _, err := p.c.Systemctl("start", unit); err != nil {
		t.Fatal(err)
	}
	st := p.show(t, unit, "StatusText")["StatusText"]
	if !strings.HasPrefix(st, "barrier ok") {
		t.Errorf("StatusText = %q; want barrier ok: the barrier returned before systemd had processed the STATUS= sent before it", st)
	}
	t.Logf("%s", st)
	p.stopClean(t, unit)
}

// mainPID: which senders systemd hears MAINPID= from. A child of the main
// process claims the main pid for itself, as a successor announcing
// itself would; the main process then reports what systemd made of it.
// Only NotifyAccess=all lets it through (exec admits the main and control
// processes, not their children), or, from systemd 254 on, a
// NOTIFYACCESS=all the main process sent first. That is why the library
// has the incumbent name its successor instead: NotifyAccess=main, the
// default, is enough for that.
func (p *prober) mainPID(t *testing.T) {
	for _, tc := range []struct {
		name, access, mode string
		accepted           bool
	}{
		{"main", "main", probeMainPIDChild, false},
		{"exec", "exec", probeMainPIDChild, false},
		{"all", "all", probeMainPIDChild, true},
		{"notifyaccess-all-message", "main", probeMainPIDChildAccess, p.version >= 254},
	} {
		t.Run(tc.name, func(t *testing.T) {
			unit := "probe-mainpid-" + tc.name + ".service"
			p.install(t, unit, tc.mode, fmt.Sprintf("Type=notify\nNotifyAccess=%s\nTimeoutStartSec=20s\n", tc.access))
			if _, err := p.c.Systemctl("start", unit); err != nil {
				t.Fatal(err)
			}
			st := p.show(t, unit, "StatusText", "MainPID")
			main, self, child, err := probeStatus(st["StatusText"])
			if err != nil {
				t.Fatalf("StatusText = %q: %v", st["StatusText"], err)
			}
			want, wanted := self, "the main process: systemd must ignore the child's MAINPID="
			if tc.accepted {
				want, wanted = child, "the child that claimed it"
			}
			if main != want {
				t.Errorf("NotifyAccess=%s, mode %s: after the child's MAINPID= and barrier, MainPID is %d (main process %d, child %d); want %d, %s", tc.access, tc.mode, main, self, child, want, wanted)
			}
			if now := st["MainPID"]; now != strconv.Itoa(want) {
				t.Errorf("MainPID after READY=1 is %s; want %d", now, want)
			}
			// systemd 252 logs the message it drops; 257 drops it
			// without a word at its default log level, so the
			// journal proves nothing there.
			j := p.c.Journal(unit)
			refused := strings.Contains(j, "reception only permitted")
			if refused && tc.accepted || !refused && !tc.accepted && p.version < 257 {
				t.Errorf("journal says \"reception only permitted\": %v; want %v:\n%s", refused, !tc.accepted, lastLines(j, 20))
			}
			t.Logf("NotifyAccess=%s (%s): MainPID %d (main process %d, child %d)", tc.access, tc.mode, main, self, child)
			p.stopClean(t, unit)
		})
	}
}

// notifyReload: Type=notify-reload waits, on systemctl reload, for the
// READY=1 that follows RELOADING=1 with MONOTONIC_USEC=, as Reloading
// sends it. Without MONOTONIC_USEC= systemd cannot tell the reload it
// asked for from an older one.
func (p *prober) notifyReload(t *testing.T) {
	t.Run("monotonic", func(t *testing.T) {
		const unit = "probe-reload.service"
		p.install(t, unit, probeReload, "Type=notify-reload\nTimeoutStartSec=20s\n")
		if _, err := p.c.Systemctl("start", unit); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			start := time.Now()
			out, err := p.c.Systemctl("reload", unit)
			took := time.Since(start)
			if err != nil {
				t.Fatalf("reload %d: %v (%s)", i+1, err, out)
			}
			if took < probeReloadTime {
				t.Errorf("reload %d returned after %v; want at least the probe's %v between RELOADING=1 and READY=1", i+1, took, probeReloadTime)
			}
			m := p.show(t, unit, "ActiveState", "SubState", "StatusText")
			if m["ActiveState"] != "active" || m["SubState"] != "running" || m["StatusText"] != "reloaded" {
				t.Errorf("after reload %d: %v; want active, running, StatusText=reloaded", i+1, m)
			}
			t.Logf("reload %d: systemctl reload returned after %v", i+1, took.Round(time.Millisecond))
		}
		p.stopClean(t, unit)
	})
	// Without MONOTONIC_USEC= systemd 257 ignores RELOADING=1 (it may be
	// an old one, sent before its SIGHUP) and then READY=1 too: the
	// reload job runs into the reload timeout (TimeoutStartSec=) and
	// fails, though the service itself stays active.
	t.Run("bare", func(t *testing.T) {
		const unit = "probe-reload-bare.service"
		const timeout = 2 * time.Second
		p.install(t, unit, probeReloadBare, fmt.Sprintf("Type=notify-reload\nTimeoutStartSec=%v\n", timeout))
		if _, err := p.c.Systemctl("start", unit); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		_, err := p.c.Systemctl("reload", unit)
		took := time.Since(start)
		m := p.show(t, unit, "ActiveState", "SubState", "ReloadResult")
		t.Logf("RELOADING=1 without MONOTONIC_USEC=: systemctl reload returned after %v: %v; then %v", took.Round(time.Millisecond), err, m)
		if err == nil || took < timeout || m["ReloadResult"] != "timeout" || m["ActiveState"] != "active" {
			t.Errorf("RELOADING=1 without MONOTONIC_USEC=, then READY=1: systemctl reload returned after %v with %v, then %v; want it to fail at the %v timeout, ReloadResult=timeout, the service still active", took, err, m, timeout)
		}
		p.stopClean(t, unit)
	})
}
