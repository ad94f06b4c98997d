//go:build linux || darwin

package baton

import (
	"bytes"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Bounded generations. In a self-upgrade chain generation k hands over to
// k+1 and drains while k+1 may hand over to k+2, and so on: links join
// only neighbours, and a generation in the middle may exit before older
// ones. So that the generation that starts draining knows every older one
// still draining, each passes its successor, in the reserved state blob
// lineageState, the generations that were alive when it handed over,
// itself included: generation number, pid and the process's start time
// (/proc/PID/stat), which together name a process for good — a pid is
// reused, a (pid, start time) pair is not. When a generation starts
// draining it looks which of those still run and, beyond
// Options.MaxDraining, stops the oldest at once: it sends HurrySignal,
// which HandleSignals turns into Hurry.
//
// Not SIGTERM: a service manager's stop sends SIGTERM to every process of
// the service (systemd's KillMode=control-group), and a generation that
// drains must then go on finishing its requests, not cut them.

// lineageState is the reserved state blob that carries the lineage.
const lineageState = reservedStatePrefix + "generations"

// maxLineage bounds the generations a lineage remembers, the newest kept:
// a thousand draining generations is far beyond any sane bound, and the
// blob (about 30 bytes a generation) must leave the application's state
// its room under MaxState.
const maxLineage = 1024

// genID names one generation's process for good.
type genID struct {
	Gen   int
	PID   int
	Start uint64 // in clock ticks after boot, /proc/PID/stat field 22
}

// encodeLineage writes one generation per line, "GEN PID START", oldest
// first.
func encodeLineage(ids []genID) []byte {
	var b []byte
	for _, id := range ids {
		b = fmt.Appendf(b, "%d %d %d\n", id.Gen, id.PID, id.Start)
	}
	return b
}

// parseLineage reads what encodeLineage wrote. Anything else is an error:
// a lineage read wrong could name a process that is not a generation.
func parseLineage(b []byte) ([]genID, error) {
	var ids []genID
	for len(b) > 0 {
		line, rest, ok := bytes.Cut(b, []byte{'\n'})
		if !ok {
			return nil, fmt.Errorf("baton: lineage: line %q does not end in a newline", line)
		}
		b = rest
		f := bytes.Split(line, []byte{' '})
		if len(f) != 3 {
			return nil, fmt.Errorf("baton: lineage: line %q: want \"GEN PID START\"", line)
		}
		var id genID
		var err error
		if id.Gen, err = strconv.Atoi(string(f[0])); err != nil || id.Gen < 1 || string(f[0]) != strconv.Itoa(id.Gen) {
			return nil, fmt.Errorf("baton: lineage: line %q: bad generation", line)
		}
		if id.PID, err = strconv.Atoi(string(f[1])); err != nil || id.PID < 1 || string(f[1]) != strconv.Itoa(id.PID) {
			return nil, fmt.Errorf("baton: lineage: line %q: bad pid", line)
		}
		if id.Start, err = strconv.ParseUint(string(f[2]), 10, 64); err != nil || string(f[2]) != strconv.FormatUint(id.Start, 10) {
			return nil, fmt.Errorf("baton: lineage: line %q: bad start time", line)
		}
		if len(ids) > 0 && ids[len(ids)-1].Gen >= id.Gen {
			return nil, fmt.Errorf("baton: lineage: generation %d after %d: want ascending generations", id.Gen, ids[len(ids)-1].Gen)
		}
		ids = append(ids, id)
		if len(ids) > maxLineage {
			return nil, fmt.Errorf("baton: lineage: more than %d generations", maxLineage)
		}
	}
	return ids, nil
}

// joinLineage returns ancestors that still run (as alive says), without
// self, followed by self, at most maxLineage, oldest first. A process that
// replaced its image in place (Exec) keeps its pid and start time: only
// its newest generation is kept, and never an entry naming self, which a
// generation must not take for an older one and stop.
func joinLineage(ancestors []genID, self genID, alive func(genID) bool) []genID {
	var out []genID
	for _, id := range ancestors {
		if id.Gen >= self.Gen || id.PID == self.PID && id.Start == self.Start || !alive(id) {
			continue
		}
		if i := slices.IndexFunc(out, func(o genID) bool { return o.PID == id.PID && o.Start == id.Start }); i >= 0 {
			out = slices.Delete(out, i, i+1)
		}
		out = append(out, id)
	}
	out = append(out, self)
	if len(out) > maxLineage {
		out = out[len(out)-maxLineage:]
	}
	return out
}

// beyondBound returns the generations of draining (oldest first, all
// draining) that must stop at once for at most bound to drain; none if
// bound is 0, no bound.
func beyondBound(draining []genID, bound int) []genID {
	if bound <= 0 || len(draining) <= bound {
		return nil
	}
	return draining[:len(draining)-bound]
}

// hurry is the Upgrader's part of bounded generations.
type hurry struct {
	once sync.Once
	c    chan struct{}

	closeOnce sync.Once
}

func (h *hurry) ch() chan struct{} {
	h.once.Do(func() { h.c = make(chan struct{}) })
	return h.c
}

// Hurry returns a channel that is closed when this generation, while it
// drains, must stop at once: cut what it still serves, and exit. A newer
// generation asks for it when more than Options.MaxDraining generations
// drain: it sends HurrySignal, which HandleSignals turns into this (an
// operator may send it too: kill -s RTMIN+6). The application cancels its
// drain, or shortens its deadline to nothing, when it is closed. Without
// HandleSignals the signal's default action ends the process instead,
// which cuts the same connections less tidily.
func (u *Upgrader) Hurry() <-chan struct{} { return u.hurry.ch() }

// hurryNow closes Hurry, once.
func (u *Upgrader) hurryNow(why string) {
	u.hurry.closeOnce.Do(func() {
		u.log.Warn("stopping at once: "+why, "generation", u.gen, "pid", os.Getpid())
		close(u.hurry.ch())
	})
}

// lineage returns this generation's lineage as it stands: the
// predecessor's, of which only what still runs, and this generation.
func (u *Upgrader) lineage() ([]genID, bool) {
	self, ok := thisGeneration(u.gen)
	if !ok {
		return nil, false
	}
	var ancestors []genID
	if u.parent != nil {
		if b, ok := u.parent.state[lineageState]; ok {
			var err error
			if ancestors, err = parseLineage(b); err != nil {
				// Not fatal: only the bound suffers. The older
				// generations drain to their own deadlines.
				u.log.Warn("ignoring the predecessor's list of generations", "err", err)
				ancestors = nil
			}
		}
	}
	return joinLineage(ancestors, self, stillRuns), true
}

// passLineage sets the lineage blob for the successor about to start.
func (u *Upgrader) passLineage() {
	ids, ok := u.lineage()
	if !ok {
		return
	}
	if err := u.setState(lineageState, encodeLineage(ids)); err != nil {
		u.log.Warn("cannot pass the list of generations on: MaxDraining will not see them", "err", err)
	}
}

// startDraining runs once a successor has taken over: this generation now
// drains, and if that makes more than MaxDraining generations draining,
// the oldest beyond the bound are stopped at once.
func (u *Upgrader) startDraining() {
	bound := u.opts.MaxDraining
	if bound <= 0 {
		return
	}
	if !boundSupported {
		u.log.Warn("MaxDraining is ignored on this system: it needs /proc to tell generations apart", "max_draining", bound)
		return
	}
	begin := time.Now()
	ids, ok := u.lineage()
	if !ok {
		return
	}
	for _, v := range beyondBound(ids, bound) {
		conns := establishedConns(v.PID)
		if err := stopGeneration(v); err != nil {
			u.log.Warn(fmt.Sprintf("cannot stop generation %d (pid %d)", v.Gen, v.PID), "err", err)
			continue
		}
		u.log.Warn(fmt.Sprintf("stopping generation %d (pid %d) at once: %d generations draining, MaxDraining %d; it held %d connections", v.Gen, v.PID, len(ids), bound, conns),
			"generation", u.gen, "stopped", v.Gen, "stopped_pid", v.PID, "draining", len(ids), "max_draining", bound, "connections", conns, "after", time.Since(begin).Round(time.Microsecond))
	}
}
