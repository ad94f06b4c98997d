//go:build linux

package baton

import (
	"testing"
	"time"

	"github.com/batonhq/baton/internal/svstatus"
)

// The interim generation's reading of the supervisor's status, one look
// at a time: it serves on through failed attempts and says so, and stops
// only when the supervisor wants the service down, is gone, or runs an
// instance that never asks for the sockets.
func TestInterimWatch(t *testing.T) {
	const (
		pred    = 100
		timeout = 2 * time.Second
	)
	up := func(pid int) svstatus.Status {
		return svstatus.Status{Kind: svstatus.Runit, PID: pid, Up: true, WantUp: true}
	}
	down := svstatus.Status{Kind: svstatus.Runit, WantUp: true}
	stamped := func(st svstatus.Status, n byte) svstatus.Status { st.Stamp = svstatus.Stamp{11: n}; return st }
	type look struct {
		at     time.Duration
		st     svstatus.Status
		stamp  byte
		alive  bool
		busy   bool
		want   interimEventKind
		pid    int // of the event, when it has one
		tries  int // attempts so far, for attempt events
		reason string
	}
	tests := []struct {
		name  string
		looks []look
	}{
		{"the predecessor drains and exits, then an instance comes and takes a while", []look{
			{at: 0, st: up(pred), stamp: 1, alive: true, want: interimServe},
			{at: time.Second, st: up(pred), stamp: 1, alive: true, want: interimServe},
			{at: 1100 * time.Millisecond, st: down, stamp: 2, alive: true, want: interimServe, reason: "the predecessor's exit is no attempt"},
			{at: 1200 * time.Millisecond, st: up(200), stamp: 3, alive: true, busy: true, want: interimServe},
			{at: 4 * time.Second, st: up(200), stamp: 3, alive: true, busy: true, want: interimStillWaiting, reason: "a take-over under way is no rival, but the wait is said"},
		}},
		{"a binary that cannot be executed: every attempt unseen but its stamp", []look{
			{at: 0, st: down, stamp: 1, alive: true, want: interimServe},
			{at: time.Second, st: down, stamp: 2, alive: true, want: interimAttemptFailed, tries: 1},
			{at: 1050 * time.Millisecond, st: down, stamp: 2, alive: true, want: interimServe},
			{at: 2 * time.Second, st: down, stamp: 3, alive: true, want: interimAttemptFailed, tries: 2},
			{at: 4100 * time.Millisecond, st: down, stamp: 3, alive: true, want: interimStillWaiting, reason: "two seconds without news"},
			{at: 60 * time.Second, st: down, stamp: 3, alive: true, want: interimStillWaiting, reason: "no give-up while the supervisor wants it up"},
		}},
		{"an instance seen, then gone without a take-over", []look{
			{at: 0, st: up(pred), stamp: 1, alive: true, want: interimServe},
			{at: 50 * time.Millisecond, st: up(200), stamp: 2, alive: true, want: interimServe},
			{at: 100 * time.Millisecond, st: down, stamp: 3, alive: true, want: interimAttemptFailed, pid: 200, tries: 1},
			{at: 1100 * time.Millisecond, st: up(201), stamp: 4, alive: true, want: interimServe},
			{at: 1150 * time.Millisecond, st: up(202), stamp: 6, alive: true, want: interimAttemptFailed, pid: 201, tries: 2, reason: "replaced between two looks"},
		}},
		{"an instance killed by the take-over timeout is still tracked for a moment", []look{
			{at: 0, st: up(200), stamp: 1, alive: true, busy: true, want: interimServe},
			{at: 2100 * time.Millisecond, st: up(200), stamp: 1, alive: true, want: interimStillWaiting, reason: "it asked: no rival; the wait is said"},
			{at: 2150 * time.Millisecond, st: down, stamp: 2, alive: true, want: interimAttemptFailed, pid: 200, tries: 1},
		}},
		{"an instance that never asks for the sockets", []look{
			{at: 0, st: up(pred), stamp: 1, alive: true, want: interimServe},
			{at: 100 * time.Millisecond, st: up(300), stamp: 2, alive: true, want: interimServe},
			{at: 2 * time.Second, st: up(300), stamp: 2, alive: true, want: interimStillWaiting},
			{at: 2100 * time.Millisecond, st: up(300), stamp: 2, alive: true, want: interimRival, pid: 300},
		}},
		{"the predecessor drains for longer than the timeout", []look{
			{at: 0, st: up(pred), stamp: 1, alive: true, want: interimServe},
			{at: 1900 * time.Millisecond, st: up(pred), stamp: 1, alive: true, want: interimServe},
			{at: 2100 * time.Millisecond, st: up(pred), stamp: 1, alive: true, want: interimStillWaiting, reason: "the predecessor is no rival"},
		}},
		{"want down", []look{
			{at: 0, st: up(pred), stamp: 1, alive: true, want: interimServe},
			{at: 50 * time.Millisecond, st: svstatus.Status{Kind: svstatus.Runit}, stamp: 2, alive: true, want: interimWantDown},
		}},
		{"the supervisor is gone", []look{
			{at: 0, st: down, stamp: 1, alive: true, want: interimServe},
			{at: 50 * time.Millisecond, st: down, stamp: 1, alive: false, want: interimSupervisorGone},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t0 := time.Unix(1e9, 0)
			w := newInterimWatch(pred, timeout, t0)
			for i, l := range tc.looks {
				e := w.observe(t0.Add(l.at), stamped(l.st, l.stamp), l.alive, l.busy)
				if e.kind != l.want || (l.pid != 0 && e.pid != l.pid) || (l.tries != 0 && e.attempts != l.tries) {
					t.Errorf("look %d at %v (%+v, stamp %d, alive %v, busy %v): got %+v; want kind %d, pid %d, attempts %d (%s)",
						i, l.at, l.st, l.stamp, l.alive, l.busy, e, l.want, l.pid, l.tries, l.reason)
				}
			}
		})
	}
}
