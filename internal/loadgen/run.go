package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoResponse means the server gave no response at all during warmup, so
// there was nothing to upgrade under load.
var ErrNoResponse = errors.New("loadgen: no response")

const (
	// progressEvery is the pace of Progress calls between upgrades.
	progressEvery = 100 * time.Millisecond

	// nearUpgrade is how long after an upgrade's end requests still count
	// as "near" it: long enough to cover an old generation draining and
	// exiting, short enough that the sample is not mostly steady state.
	nearUpgrade = 500 * time.Millisecond

	// slowLead is how long the slow request gets between being written
	// and the upgrade's start, so that the server has read it and is
	// inside its handler (in flight, not in a queue) when the upgrade
	// begins. It is capped at half the SlowDelay.
	slowLead = 50 * time.Millisecond

	// failurePause is how long a client waits after a failed request
	// before its next one. Without it a refusing server turns every
	// client into a busy loop of instant failures, and failure counts
	// measure CPU speed rather than how long the server was broken.
	failurePause = 5 * time.Millisecond
)

// Progress is a snapshot of a run, given to Config.Progress.
type Progress struct {
	UpgradesDone   int           `json:"upgrades_done"` // returned, ok or failed
	UpgradesFailed int           `json:"upgrades_failed"`
	UpgradesTotal  int           `json:"upgrades_total"`
	Requests       int64         `json:"requests"` // load requests finished
	Failures       int64         `json:"failures"` // of which failed
	Elapsed        time.Duration `json:"elapsed_ns"`
	Done           bool          `json:"done"` // the last call: Run returns next
}

// Run drives load at c.URL, calls c.Upgrade c.Upgrades times while it does,
// and reports what the clients saw.
//
// The error is for a Config that cannot run (no URL, not http://, no
// Upgrade, …) and for a server that gave no response during warmup
// (ErrNoResponse); then the Report is nil. Everything else, including
// failed requests and failed upgrades, is in the Report. When ctx is done
// Run stops as soon as Upgrade, if it is running, has returned; requests in
// flight are dropped uncounted, and the Report, marked Stopped, covers what
// came before.
func Run(ctx context.Context, c Config) (*Report, error) {
	s, err := c.settings()
	if err != nil {
		return nil, err
	}
	r := &run{
		settings:  s,
		exhausted: make(chan struct{}),
	}
	return r.run(ctx)
}

// run is one call of Run. The goroutine in run.run owns everything but the
// atomics, which the clients update and the progress ticker reads.
type run struct {
	settings
	t0 time.Time

	issued    atomic.Int64 // load requests started, for MaxRequests
	finished  atomic.Int64 // load requests counted in the Report
	failed    atomic.Int64 // of which failed
	answered  atomic.Int64 // status lines received, whatever the status
	lastErr   atomic.Pointer[string]
	exhausted chan struct{} // closed when MaxRequests is reached
	exhaust   sync.Once

	upgradesDone, upgradesFailed atomic.Int64
}

// upgradeRecord is one Upgrade call.
type upgradeRecord struct {
	start, end time.Duration // since t0
	err        error
}

// slowResult is one slow request.
type slowResult struct {
	upgrade int // 1-based
	err     error
	aborted bool
	end     time.Time
}

func (r *run) run(ctx context.Context) (*Report, error) {
	r.t0 = time.Now()
	loadCtx, abort := context.WithCancel(ctx)
	defer abort()
	var wg sync.WaitGroup // every goroutine Run starts

	stopping := make(chan struct{}) // closed: clients finish their request and quit
	tallies := make(chan *tally, len(r.modes)*r.clients)
	for _, m := range r.modes {
		for range r.clients {
			wg.Go(func() { tallies <- r.work(loadCtx, stopping, m) })
		}
	}

	// upgraded tells tick that an upgrade ended: tick takes the snapshot
	// itself, so that every Progress comes from one goroutine, in order,
	// and its counts and elapsed time never go back (a snapshot taken here
	// and delivered after one of the ticker's would).
	var upgraded chan struct{} // nil: no Progress
	quitTicker := make(chan struct{})
	if r.progress != nil {
		upgraded = make(chan struct{})
		wg.Go(func() { r.tick(upgraded, quitTicker) })
	}
	finish := func() []*tally {
		close(stopping)
		ts := make([]*tally, 0, cap(tallies))
		for range cap(tallies) {
			ts = append(ts, <-tallies)
		}
		abort()
		close(quitTicker)
		wg.Wait()
		return ts
	}

	stopped := r.pause(ctx, r.warmup)
	warmupEnd := time.Since(r.t0)
	if ctx.Err() == nil && r.answered.Load() == 0 {
		// Abort rather than let requests finish: a server that does not
		// answer would hold finish for a whole RequestTimeout.
		abort()
		finish()
		why := "no request finished"
		if p := r.lastErr.Load(); p != nil {
			why = "last error: " + *p
		}
		return nil, fmt.Errorf("%w from %s in %v of load (%s)", ErrNoResponse, r.url, warmupEnd.Round(time.Millisecond), why)
	}

	var ups []upgradeRecord
	var slows []slowResult
	var slowSpanning int
	for i := 0; i < r.upgrades && stopped == ""; i++ {
		var slow <-chan slowResult
		if r.slowDelay >= 0 {
			slow = r.startSlow(loadCtx, &wg)
		}
		if ctx.Err() != nil {
			stopped = ctx.Err().Error()
			break
		}
		start := time.Now()
		err := r.upgrade(ctx)
		end := time.Now()
		if err != nil && ctx.Err() != nil {
			// Interrupted, not failed: the caller stopped the run.
			stopped = ctx.Err().Error()
			break
		}
		ups = append(ups, upgradeRecord{start: start.Sub(r.t0), end: end.Sub(r.t0), err: err})
		r.upgradesDone.Add(1)
		if err != nil {
			r.upgradesFailed.Add(1)
		}
		if upgraded != nil {
			upgraded <- struct{}{}
		}
		if slow != nil {
			select {
			case res := <-slow:
				if !res.aborted {
					res.upgrade = i + 1
					slows = append(slows, res)
					if res.end.After(end) {
						slowSpanning++
					}
				}
			case <-ctx.Done():
			}
		}
		// Settle counts from the upgrade's end, not from the slow
		// request's: both run side by side.
		stopped = r.pause(ctx, r.settle-time.Since(end))
	}
	ts := finish()
	return r.summarize(ts, ups, slows, slowSpanning, warmupEnd, stopped), nil
}

// pause waits for d, and says why the run must stop if it must.
func (r *run) pause(ctx context.Context, d time.Duration) (stopped string) {
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-r.exhausted:
		}
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err().Error()
	case isClosed(r.exhausted):
		return fmt.Sprintf("reached MaxRequests (%d)", r.maxRequests)
	}
	return ""
}

func isClosed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// work is one client: it sends requests until told to stop and returns
// what it saw.
func (r *run) work(ctx context.Context, stopping <-chan struct{}, m Mode) *tally {
	t := &tally{mode: m}
	c := newClient(r.target, m != Fresh, m == Pausing)
	defer func() {
		c.close()
		t.connections = c.dials
	}()
	for {
		select {
		case <-stopping:
			return t
		case <-ctx.Done():
			return t
		default:
		}
		if r.issued.Add(1) > r.maxRequests {
			r.exhaust.Do(func() { close(r.exhausted) })
			return t
		}
		start := time.Now()
		resp, err := c.do(ctx, r.requestTimeout)
		lat := time.Since(start)
		if resp.answered {
			r.answered.Add(1)
		}
		if err != nil && ctx.Err() != nil {
			// Cut short by the caller, not by the server.
			return t
		}
		r.finished.Add(1)
		t.requests++
		if err == nil {
			t.ok(start.Sub(r.t0), lat, resp.pid)
			if m == Pausing && !r.think(ctx, stopping) {
				return t
			}
			continue
		}
		r.failed.Add(1)
		msg := err.Error()
		r.lastErr.Store(&msg)
		t.failures.add(err)
		select {
		case <-time.After(failurePause):
		case <-stopping:
		case <-ctx.Done():
		}
	}
}

// think keeps a Pausing client silent for a random time up to maxPause,
// and reports false if the run ends meanwhile.
func (r *run) think(ctx context.Context, stopping <-chan struct{}) bool {
	t := time.NewTimer(rand.N(r.maxPause + 1))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stopping:
	case <-ctx.Done():
	}
	return false
}

// startSlow starts the slow request that will be in flight during the next
// upgrade, and returns once it is on its way.
func (r *run) startSlow(ctx context.Context, wg *sync.WaitGroup) <-chan slowResult {
	res := make(chan slowResult, 1)
	sent := make(chan struct{})
	c := newClient(r.slow, false, false)
	c.afterWrite = func() { close(sent) }
	wg.Go(func() {
		defer c.close()
		_, err := c.do(ctx, r.requestTimeout+r.slowDelay)
		res <- slowResult{err: err, aborted: err != nil && ctx.Err() != nil, end: time.Now()}
	})
	select {
	case <-sent:
	case <-ctx.Done():
		return res
	}
	t := time.NewTimer(min(slowLead, r.slowDelay/2))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return res
}

// tick calls Progress at every upgrade's end and every progressEvery
// between them, until quit is closed; then once more with Done set.
func (r *run) tick(upgraded <-chan struct{}, quit <-chan struct{}) {
	t := time.NewTicker(progressEvery)
	defer t.Stop()
	for {
		select {
		case <-upgraded:
			r.progress(r.snapshot(false))
		case <-t.C:
			r.progress(r.snapshot(false))
		case <-quit:
			r.progress(r.snapshot(true))
			return
		}
	}
}

func (r *run) snapshot(done bool) Progress {
	return Progress{
		UpgradesDone:   int(r.upgradesDone.Load()),
		UpgradesFailed: int(r.upgradesFailed.Load()),
		UpgradesTotal:  r.upgrades,
		Requests:       r.finished.Load(),
		Failures:       r.failed.Load(),
		Elapsed:        time.Since(r.t0),
		Done:           done,
	}
}
