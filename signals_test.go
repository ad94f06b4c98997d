//go:build linux

package baton_test

import (
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/proctest"
)

// A SIGHUP that reaches a generation before it is ready — an operator who
// asks for the new binary while the last upgrade is still starting — is
// not lost: HandleSignals carries it out once the generation is ready,
// once however many came.
func TestSIGHUPBeforeReadyUpgradesOnceReady(t *testing.T) {
	t.Parallel()
	s := startServer(t, serverConfig{HandleSignals: true, ReadyDelayGen: 2, ReadyDelay: time.Second})
	if err := syscall.Kill(s.pid, syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	line, err := s.proc.WaitLine("new gen=2 ", 20*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	gen2, _ := strconv.Atoi(proctest.Field(line, "pid"))
	for range 3 {
		if err := syscall.Kill(gen2, syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	s.waitReady(2)
	s.waitReady(3)
	if out := s.proc.Output(); !strings.Contains(out, "SIGHUP before ready: upgrading as soon as this generation is ready") {
		t.Errorf("no word of the early SIGHUP in the log:\n%s", out)
	}
	// One upgrade for the three signals: no generation 4.
	time.Sleep(500 * time.Millisecond)
	if _, err := s.proc.WaitLine("ready gen=4 ", 0); err == nil {
		t.Errorf("three early SIGHUPs made two upgrades")
	}
	s.stop()
}
