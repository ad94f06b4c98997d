//go:build linux || darwin

package baton

import (
	"os"
	"sync"
	"time"
)

// statsState is the reserved state blob that carries the counts.
const statsState = reservedStatePrefix + "stats"

// stats is the Upgrader's part: the counts and when this generation
// started draining.
type stats struct {
	mu            sync.Mutex
	s             serviceStats
	started       time.Time
	drainingSince time.Time
}

// inheritStats notes when this process started and takes the
// predecessor's counts over, if it passed any.
func (u *Upgrader) inheritStats() {
	u.stats.started = processStart()
	if u.parent == nil {
		return
	}
	b, ok := u.parent.state[statsState]
	if !ok {
		return
	}
	s, err := parseStats(b)
	if err != nil {
		u.log.Warn("ignoring the predecessor's upgrade counts", "err", err)
		return
	}
	u.stats.mu.Lock()
	u.stats.s = s
	u.stats.mu.Unlock()
}

// countUpgrade records the end of a handover this generation ran (err nil:
// the successor took over), and passes the counts on; the successor
// received them before the outcome, and counts its own success itself
// (countTakeover).
func (u *Upgrader) countUpgrade(err error) {
	u.stats.mu.Lock()
	defer u.stats.mu.Unlock()
	if err == nil {
		u.stats.s.Upgrades.OK++
		u.stats.drainingSince = time.Now()
		return
	}
	u.stats.s.Upgrades.Failed++
	u.stats.s.Upgrades.LastError, u.stats.s.Upgrades.LastErrorAt = err.Error(), time.Now()
}

// countTakeover records, in a successor once it names the service, the
// handover that made it; restart says it came through the control socket.
func (u *Upgrader) countTakeover(restart bool) {
	u.stats.mu.Lock()
	defer u.stats.mu.Unlock()
	u.stats.s.Upgrades.OK++
	if restart {
		u.stats.s.Restarts++
	}
}

// passStats sets the counts as state for the successor about to start.
func (u *Upgrader) passStats() {
	u.stats.mu.Lock()
	b := encodeStats(u.stats.s)
	u.stats.mu.Unlock()
	if err := u.setState(statsState, b); err != nil {
		u.log.Warn("cannot pass the upgrade counts on", "err", err)
	}
}

// Status reports this generation, the older ones still running and the
// service's upgrade counts. It reads /proc (and asks the kernel for the
// TCP connections, once per call), so it is for a status endpoint, not a
// hot path.
func (u *Upgrader) Status() Status {
	u.stats.mu.Lock()
	s := Status{Upgrades: u.stats.s.Upgrades, Restarts: u.stats.s.Restarts, Relay: u.RelayStats()}
	self := GenerationStatus{Generation: u.gen, PID: os.Getpid(), State: u.genState(), Started: u.stats.started, DrainingSince: u.stats.drainingSince}
	u.stats.mu.Unlock()
	s.Generations = append(s.Generations, self)
	older := u.olderGenerations()
	for i := len(older) - 1; i >= 0; i-- {
		s.Generations = append(s.Generations, older[i])
	}
	now := time.Now()
	observe(s.Generations)
	for i := range s.Generations {
		if g := &s.Generations[i]; !g.Started.IsZero() {
			g.Age = now.Sub(g.Started)
		}
	}
	return s
}

// genState is where this generation stands.
func (u *Upgrader) genState() GenerationState {
	u.mu.Lock()
	defer u.mu.Unlock()
	switch {
	case u.handedOver:
		return GenDraining
	case u.stopped:
		return GenStopped
	case !u.isReady():
		return GenStarting
	case !u.isSettled():
		return GenProbation
	case u.upgrading != nil:
		return GenUpgrading
	}
	return GenServing
}
