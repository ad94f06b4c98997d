package supervisor

import (
	"fmt"
	"time"
)

// crashed handles a serving worker that exited by itself with a failure
// (m.crash), or a failed attempt to replace it: a restart after a
// backoff, unless a generation being started takes over anyway, or the
// crashes within cfg.RestartWindow exceed cfg.RestartLimit.
func (m *Master) crashed(g *generation, why string) {
	n := m.crashes.add(time.Now(), m.cfg.RestartWindow)
	switch decideRestart(n, m.cfg.RestartLimit) {
	case restartNever:
		m.exit = m.crash
		m.beginStop("the serving generation exited: " + m.crash.Status)
		return
	case restartGiveUp:
		m.log.Error("the worker keeps failing: giving up", "generation", g.n, "pid", g.pid, "why", why, "failures", n, "window", m.cfg.RestartWindow, "limit", m.cfg.RestartLimit, "status", m.crash.Status)
		m.exit = m.crash
		m.beginStop(fmt.Sprintf("%d failures of the worker within %v", n, m.cfg.RestartWindow))
		return
	}
	if p := m.pending; p != nil && p.state == StateProbation {
		// Its probation was meant to keep the old one as a fallback:
		// there is none left, and it serves already.
		m.log.Warn("the serving generation exited unexpectedly: the generation on probation takes over", "generation", g.n, "pid", g.pid, "why", why, "next", p.n)
		m.promote(p)
		return
	}
	if m.pending != nil {
		m.log.Warn("the serving generation exited unexpectedly: the generation being started takes over", "generation", g.n, "pid", g.pid, "why", why, "next", m.pending.n)
		return
	}
	delay := restartBackoff(n)
	m.log.Warn("the serving generation failed: restarting it", "generation", g.n, "pid", g.pid, "why", why, "failures", n, "limit", m.cfg.RestartLimit, "window", m.cfg.RestartWindow, "backoff", delay)
	m.notify.Status(fmt.Sprintf("restarting after a failure of generation %d (%s)", g.n, why))
	m.restartSeq++
	seq := m.restartSeq
	m.restartT = time.AfterFunc(delay, func() { m.send(restartEvent{seq}) })
}

// restart starts the generation that replaces a crashed one, once the
// backoff of restart seq is over: unless a newer restart was armed since,
// or the master is stopping, or a generation serves or starts already.
func (m *Master) restart(seq int) {
	if seq != m.restartSeq || m.stopping || m.current != nil || m.pending != nil {
		return
	}
	m.restartT = nil
	m.restarts++
	m.log.Info("restarting the worker", "restart", len(m.crashes), "of", m.cfg.RestartLimit, "window", m.cfg.RestartWindow)
	m.beginGeneration(nil)
}
