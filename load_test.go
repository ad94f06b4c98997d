//go:build linux

package baton_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
	"github.com/batonhq/baton/internal/proctest"
)

// upgradeFunc returns a loadgen upgrade step: SIGHUP to the serving
// generation, then wait until the next one is ready.
func (s *server) upgradeFunc() func(context.Context) error {
	var mu sync.Mutex
	return func(ctx context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		if err := syscall.Kill(s.pid, syscall.SIGHUP); err != nil {
			return fmt.Errorf("SIGHUP to pid %d: %w", s.pid, err)
		}
		next := s.gen + 1
		line, err := s.proc.WaitLine(fmt.Sprintf("ready gen=%d ", next), 30*time.Second)
		if err != nil {
			return err
		}
		s.gen = next
		s.pid, _ = strconv.Atoi(proctest.Field(line, "pid"))
		s.pids = append(s.pids, s.pid)
		proctest.Track(s.t, s.pid, 15*time.Second)
		return nil
	}
}

// The core claim, counted: 16 clients that never retry, 20 upgrades, a
// slow request crossing each one, and not one failure — with a new
// connection per request and with keep-alive connections.
func TestZeroFailedRequestsUnderLoad(t *testing.T) {
	for _, mode := range []loadgen.Mode{loadgen.Fresh, loadgen.KeepAlive} {
		t.Run(string(mode), func(t *testing.T) {
			// Above the stalls of a -race test process on a shared machine:
			// a client frozen for the grace looks idle to the drain.
			s := startServer(t, serverConfig{IdleGrace: 2 * time.Second})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rep, err := loadgen.Run(ctx, loadgen.Config{
				URL:       s.url("/"),
				Clients:   16,
				Modes:     []loadgen.Mode{mode},
				Upgrades:  20,
				Upgrade:   s.upgradeFunc(),
				Warmup:    300 * time.Millisecond,
				Settle:    100 * time.Millisecond,
				SlowDelay: 300 * time.Millisecond,
			})
			if err != nil {
				t.Fatalf("loadgen.Run: %v", err)
			}
			var b strings.Builder
			rep.WriteText(&b)
			t.Logf("\n%s", b.String())
			for _, p := range rep.Problems() {
				t.Error(p)
			}
			// The load really reached many generations, not just the last.
			if len(rep.PIDs) < 15 {
				t.Errorf("requests were served by %d generations; want most of the 21", len(rep.PIDs))
			}
			if rep.Requests < 1000 {
				t.Errorf("only %d requests were made: the load is too light to mean anything", rep.Requests)
			}
			s.stop()
		})
	}
}
