package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/reaper"
	"golang.org/x/sys/unix"
)

// The run loop: the one goroutine that owns the master's state. Everything
// else — the reaper, the notify readers, the probes, the timers, the
// control connections, the public methods — sends it an event. The loop
// never blocks: what must wait (a worker's last stderr lines, the trial run
// of the master's new binary) waits in a goroutine of its own, which
// reports back with an event.

// event is something for the run loop; apply runs there, and only there.
type event interface{ apply(m *Master) }

type (
	// readyEvent: g said it is ready (READY=1 from its pid, or a probe).
	readyEvent struct{ g *generation }
	// exitEvent: the reaper reaped g.
	exitEvent struct {
		g  *generation
		ws syscall.WaitStatus
	}
	// timeoutEvent: g's timer fired: its upgrade timeout, or its drain
	// deadline once it was told to stop.
	timeoutEvent struct{ g *generation }
	// probationEvent: g's probation (Config.Probation) is over.
	probationEvent struct{ g *generation }
	// reloadReq: Reload, from the API or the control socket.
	reloadReq   struct{ reply chan reloadReply }
	reloadReply struct {
		res Result
		err error
	}
	// statusReq: Status.
	statusReq struct{ reply chan Status }
	// stopReq: Stop; done is closed once Run has returned. answered, if
	// not nil, is closed once a control connection has answered "stop".
	stopReq struct {
		done     chan struct{}
		answered <-chan struct{}
	}
	// restartEvent: the backoff of restart seq is over.
	restartEvent struct{ seq int }
	// hupEvent: SIGHUP.
	hupEvent struct{}
	// signalReq: a signal for the serving worker.
	signalReq struct{ sig syscall.Signal }
	// execReq: ExecMaster, from the API (answer nil) or the control
	// socket (answer is the connection the new image answers on).
	execReq struct {
		answer *net.UnixConn
		reply  chan error
	}
	// trialEvent: the trial run of the master's new binary for req is
	// over; err says how it went.
	trialEvent struct {
		req execReq
		err error
	}
	// tailEvent: the last stderr lines of a generation that ended are in;
	// then uses them.
	tailEvent struct {
		lines []string
		then  func([]string)
	}
)

func (e readyEvent) apply(m *Master)   { m.ready(e.g) }
func (e exitEvent) apply(m *Master)    { m.exited(e.g, e.ws) }
func (e timeoutEvent) apply(m *Master) { m.timedOut(e.g) }
func (e probationEvent) apply(m *Master) {
	if e.g == m.pending && e.g.state == StateProbation && !m.stopping {
		m.promote(e.g)
	}
}
func (e statusReq) apply(m *Master)    { e.reply <- m.status() }
func (e restartEvent) apply(m *Master) { m.restart(e.seq) }
func (e execReq) apply(m *Master)      { m.beginExec(e) }
func (e trialEvent) apply(m *Master)   { m.endExec(e.req, e.err) }

func (e tailEvent) apply(m *Master) {
	m.tailing--
	e.then(e.lines)
}

func (e reloadReq) apply(m *Master) {
	switch {
	case m.stopping:
		e.reply <- reloadReply{err: ErrStopped}
	case m.pending != nil:
		e.reply <- reloadReply{err: ErrReloadInProgress}
	default:
		m.beginGeneration(e.reply)
	}
}

func (e stopReq) apply(m *Master) {
	m.stops = append(m.stops, e.done)
	if e.answered != nil {
		m.answers = append(m.answers, e.answered)
	}
	m.beginStop("stop requested")
}

func (hupEvent) apply(m *Master) {
	switch {
	case m.stopping:
		m.log.Info("SIGHUP ignored: the master is stopping")
	case m.pending != nil:
		// Not refused as a control request is: whoever sent it may have
		// changed something the reload under way started too early to
		// see. Any number of them make one more reload.
		if !m.hupQueued {
			m.hupQueued = true
			m.log.Info("SIGHUP during a reload: one more reload follows it", "generation", m.pending.n)
		}
	default:
		m.beginGeneration(m.logReload("SIGHUP"))
	}
}

func (e signalReq) apply(m *Master) {
	if m.current != nil && !m.current.signaled {
		m.log.Info("forwarding a signal", "signal", e.sig.String(), "pid", m.current.pid)
		unix.Kill(m.current.pid, e.sig)
	}
}

// stopAnswerWait bounds the wait, once every generation is gone, for the
// control connections that asked to stop to be answered: a write of one
// line to a local socket, which a client that went away cannot hold up
// for longer than this.
const stopAnswerWait = 2 * time.Second

// Run starts the first generation and supervises until the master is
// stopped (Stop, the control socket, or ctx), or the serving generation
// exits by itself. It returns nil when the last serving generation exited
// with status 0, an *ExitError when it exited otherwise, and a
// *GenerationError when the first generation never served.
func (m *Master) Run(ctx context.Context) error {
	if m.started.IsZero() {
		m.started = time.Now()
	}
	if err := reaper.BecomeSubreaper(); err != nil {
		m.log.Warn("cannot become a child subreaper: orphans of the workers will not be reaped here", "err", err)
	}
	m.reaper = m.newReaper()
	if m.adopted != nil {
		m.resume()
	} else {
		m.reaper.Start()
		go m.serveControl(m.ctl)
		m.notify.Status("starting")
		m.beginGeneration(nil)
	}
	m.serveMetrics()
	ctxDone := ctx.Done()
	for !m.stopping || len(m.live) > 0 || m.tailing > 0 {
		select {
		case <-ctxDone:
			ctxDone = nil
			m.beginStop("stop requested")
		case e := <-m.events:
			e.apply(m)
		}
	}
	m.reapOrphans()
	m.reaper.Stop()
	m.lastStat = m.status()
	m.lastStat.State = StateStopped
	m.closeAll()
	close(m.done)
	for _, c := range m.stops {
		close(c)
	}
	deadline := time.NewTimer(stopAnswerWait)
	defer deadline.Stop()
	for _, a := range m.answers {
		select {
		case <-a:
		case <-deadline.C:
			return m.exit
		}
	}
	return m.exit
}

// beginGeneration starts the next generation; reply, if not nil, gets
// the outcome.
func (m *Master) beginGeneration(reply chan reloadReply) {
	m.next++
	g := &generation{n: m.next, state: StateStarting, reload: m.current != nil}
	m.reloadAt = time.Now()
	if m.current != nil {
		m.notify.Reloading()
	}
	err := m.start(g, func(ws syscall.WaitStatus) { m.send(exitEvent{g, ws}) })
	if err != nil {
		m.log.Error("cannot start a generation", "generation", g.n, "err", err)
		m.fail(g, reply, &GenerationError{Gen: g.n, Reason: "cannot start: " + err.Error(), Err: err})
		return
	}
	m.log.Info("started a generation", "generation", g.n, "pid", g.pid)
	m.live[g.pid] = g
	m.gens = append(m.gens, g)
	m.pending = g
	if reply != nil {
		m.replies = append(m.replies, reply)
	}
	g.timer = time.AfterFunc(m.cfg.UpgradeTimeout, func() { m.send(timeoutEvent{g}) })
}

// afterTail calls then, on the loop, with g's last stderr lines once its
// stderr pipe has reached its end or stderrTailWait has passed: a child of
// the worker may hold the pipe open. Run does not return before.
func (m *Master) afterTail(g *generation, then func([]string)) {
	if g.stderrDone == nil {
		then(g.stderr.lines(StderrLines))
		return
	}
	m.tailing++
	go func() {
		select {
		case <-g.stderrDone:
		case <-time.After(stderrTailWait):
		}
		m.send(tailEvent{g.stderr.lines(StderrLines), then})
	}()
}

// fail ends a generation that never served; the serving one goes on. The
// first generation failing stops the master.
func (m *Master) fail(g *generation, reply chan reloadReply, gerr *GenerationError) {
	g.state = StateFailed
	if m.pending == g {
		m.pending = nil
	}
	replies := m.replies
	m.replies = nil
	if reply != nil {
		replies = append(replies, reply)
	}
	res := Result{Gen: g.n, NewPID: g.pid, Duration: time.Since(m.reloadAt), Error: gerr.Error()}
	if g.reload && !errors.Is(gerr, ErrStopped) {
		m.upgrades.Failed++
		m.upgrades.LastError, m.upgrades.LastErrorAt = gerr.Error(), time.Now()
	}
	if m.current != nil {
		res.OldPID = m.current.pid
		m.notify.Send("READY=1", "STATUS="+statusLine("reload failed: "+gerr.Reason+"; still serving", m.current))
	}
	// The callers hear of it once the tail is in: their report has it.
	m.afterTail(g, func(lines []string) {
		gerr.Stderr, res.Stderr = lines, lines
		for _, r := range replies {
			r <- reloadReply{res: res, err: gerr}
		}
	})
	switch {
	case m.current != nil || m.stopping:
	case !m.served:
		m.exit = gerr
		m.beginStop("the first generation failed")
		return
	default:
		// A restart (or a reload while none serves) failed: one more
		// crash, with the status of the last worker that exited.
		m.crashed(g, gerr.Reason)
	}
	m.reloadDone()
}

// reloadDone follows the end of a reload: a SIGHUP that came meanwhile
// starts the next one.
func (m *Master) reloadDone() {
	if m.hupQueued && m.pending == nil && !m.stopping {
		m.hupQueued = false
		m.log.Info("reloading for the SIGHUP that came during the last reload")
		m.beginGeneration(m.logReload("SIGHUP"))
	}
}

// logReload returns a reply channel for a reload nobody waits for: its
// outcome is logged.
func (m *Master) logReload(why string) chan reloadReply {
	reply := make(chan reloadReply, 1)
	go func() {
		r := <-reply
		if r.err != nil {
			m.log.Error("reload on "+why+" failed", "err", r.err)
			return
		}
		m.log.Info("reloaded on "+why, "old", r.res.OldPID, "new", r.res.NewPID, "took", r.res.Duration.Round(time.Millisecond))
	}()
	return reply
}

func (m *Master) ready(g *generation) {
	if g != m.pending || g.state != StateStarting || m.stopping {
		return
	}
	g.timer.Stop()
	g.readyAt = time.Now()
	m.log.Info("generation ready", "generation", g.n, "pid", g.pid, "after", g.readyAt.Sub(g.started).Round(time.Millisecond))
	if m.cfg.Probation > 0 && m.current != nil {
		// The old generation is not told anything: both accept from
		// the shared sockets until the window is over. The reload
		// stays under way (m.pending) meanwhile, and so does systemd's
		// RELOADING=1: READY=1 follows only the outcome.
		g.state, g.probationAt = StateProbation, g.readyAt
		m.log.Info("generation on probation", "generation", g.n, "pid", g.pid, "for", m.cfg.Probation, "beside", m.current.pid)
		m.notify.Status(statusLine(fmt.Sprintf("on probation for %v", m.cfg.Probation), g))
		g.timer = time.AfterFunc(m.cfg.Probation, func() { m.send(probationEvent{g}) })
		return
	}
	m.promote(g)
}

// promote makes g, ready and past its probation if it had one, the
// serving generation; the one it replaces is told to drain.
func (m *Master) promote(g *generation) {
	if g.timer != nil {
		g.timer.Stop()
	}
	g.state = StateServing
	m.pending = nil
	m.served = true
	old := m.current
	m.current = g
	if !g.probationAt.IsZero() {
		m.log.Info("probation passed", "generation", g.n, "pid", g.pid)
	}
	m.notify.Send("READY=1", "STATUS="+statusLine("serving", g))
	res := Result{OK: true, Gen: g.n, NewPID: g.pid, Duration: time.Since(m.reloadAt)}
	if g.reload {
		m.upgrades.OK++
	}
	if old != nil {
		res.OldPID = old.pid
		m.retire(old, StateDraining)
	}
	for _, r := range m.replies {
		r <- reloadReply{res: res}
	}
	m.replies = nil
	m.reloadDone()
}

// retire tells g to drain and exit, and arms its deadline.
func (m *Master) retire(g *generation, state State) {
	if g.signaled {
		return
	}
	g.signaled = true
	g.state, g.draining = state, time.Now()
	if g.timer != nil {
		g.timer.Stop()
	}
	unix.Kill(g.pid, m.cfg.StopSignal)
	g.timer = time.AfterFunc(m.cfg.DrainTimeout, func() { m.send(timeoutEvent{g}) })
	if state == StateDraining {
		m.boundDraining()
	}
}

// boundDraining kills the oldest draining generations beyond
// cfg.MaxDraining. Their connections are counted first, on the loop: the
// count must precede the kill, and the pid is only sure to be theirs
// until they are reaped, which the loop itself handles. One sock_diag
// dump and a read of /proc/PID/fd per generation killed: a millisecond or
// so, and only when the bound is hit.
func (m *Master) boundDraining() {
	if m.cfg.MaxDraining <= 0 {
		return
	}
	var draining []*generation
	for _, g := range m.gens { // oldest first
		if g.state == StateDraining && !g.killed {
			draining = append(draining, g)
		}
	}
	for _, g := range draining[:max(len(draining)-m.cfg.MaxDraining, 0)] {
		conns := m.establishedOf(g.pid)
		g.killed = true
		m.limitKills++
		m.log.Warn("too many generations draining: killing the oldest", "generation", g.n, "pid", g.pid,
			"drained", time.Since(g.draining).Round(time.Millisecond), "connections", conns, "max_draining", m.cfg.MaxDraining)
		unix.Kill(g.pid, unix.SIGKILL)
	}
}

func (m *Master) timedOut(g *generation) {
	if _, ok := m.live[g.pid]; !ok {
		return // reaped meanwhile
	}
	switch {
	case g == m.pending && g.state == StateStarting:
		m.log.Warn("generation not ready in time: killing it", "generation", g.n, "pid", g.pid, "timeout", m.cfg.UpgradeTimeout)
		g.signaled = true
		reason := "not ready within " + m.cfg.UpgradeTimeout.String()
		if st, err := procfs.ReadStat(g.pid); err == nil && (st.State == 'T' || st.State == 't') {
			reason += " (it was stopped by a signal: SIGSTOP or a debugger)"
		}
		unix.Kill(g.pid, unix.SIGKILL)
		m.fail(g, nil, &GenerationError{Gen: g.n, PID: g.pid, Reason: reason})
	case g.signaled:
		// Whatever it still serves is lost: say how much.
		conns := m.connectionsOf(g.pid)
		g.killed = true // no longer one of the draining for MaxDraining
		m.drainKills++
		m.log.Warn("generation still runs at its drain deadline: killing it", "generation", g.n, "pid", g.pid, "deadline", m.cfg.DrainTimeout, "connections", conns)
		unix.Kill(g.pid, unix.SIGKILL)
	}
}

func (m *Master) exited(g *generation, ws syscall.WaitStatus) {
	delete(m.live, g.pid)
	for i, x := range m.gens {
		if x == g {
			m.gens = append(m.gens[:i], m.gens[i+1:]...)
			break
		}
	}
	if g.timer != nil {
		g.timer.Stop()
	}
	g.closePipes()
	status := describe(ws)
	if !g.draining.IsZero() {
		m.drains.add(time.Since(g.draining))
	}
	m.log.Info("generation exited", "generation", g.n, "pid", g.pid, "status", status)
	// exitError is the ExitError of g, its Stderr filled in once the tail
	// is in (before Run returns it).
	exitError := func() *ExitError {
		xerr := &ExitError{PID: g.pid, Status: status, Code: exitCode(ws)}
		m.afterTail(g, func(lines []string) { xerr.Stderr = lines })
		return xerr
	}
	switch {
	case g == m.pending:
		if m.current == nil && m.served && !m.stopping {
			m.crash = exitError()
		}
		reason := "exited before it was ready: " + status
		if g.state == StateProbation {
			// It served: whatever it had accepted is lost, but the old
			// generation never stopped accepting.
			reason = fmt.Sprintf("died %d ms into probation: %s", time.Since(g.probationAt).Milliseconds(), status)
			m.log.Warn("generation died on probation: the old one serves on", "generation", g.n, "pid", g.pid, "why", reason)
		}
		m.fail(g, nil, &GenerationError{Gen: g.n, PID: g.pid, Reason: reason})
	case g == m.current:
		m.current = nil
		var xerr *ExitError
		if exitCode(ws) != 0 {
			xerr = exitError()
		}
		if xerr == nil || m.stopping {
			if xerr != nil {
				m.exit = xerr
			}
			m.beginStop("the serving generation exited: " + status)
			return
		}
		// A crash. The master still holds every socket, so connections
		// wait in the accept queue for the next generation.
		m.crash = xerr
		m.crashed(g, "exited unexpectedly: "+status)
	}
}

// beginStop stops everything: the generation being started is killed,
// the others told to drain.
func (m *Master) beginStop(why string) {
	if m.stopping {
		return
	}
	m.stopping = true
	m.log.Info("stopping", "why", why)
	if m.restartT != nil {
		m.restartT.Stop()
		m.restartT = nil
	}
	if m.current == nil && m.crash != nil && m.exit == nil {
		m.exit = m.crash // stopped while the crashed worker was being replaced
	}
	m.notify.Stopping()
	if g := m.pending; g != nil {
		if g.state == StateProbation {
			// It serves: drained below with the others, not killed.
			g.timer.Stop()
		} else {
			g.signaled = true
			unix.Kill(g.pid, unix.SIGKILL)
		}
		m.fail(g, nil, &GenerationError{Gen: g.n, PID: g.pid, Reason: "the master is stopping", Err: ErrStopped})
	}
	for _, g := range m.gens {
		m.retire(g, StateStopping)
	}
}

func statusLine(what string, g *generation) string {
	return fmt.Sprintf("%s, generation %d, pid %d", what, g.n, g.pid)
}

func (m *Master) status() Status {
	now := time.Now()
	st := Status{PID: os.Getpid(), Name: m.cfg.Name, Started: m.started, Control: m.cfg.Control, State: StateServing}
	switch {
	case m.stopping:
		st.State = StateStopping
	case m.current == nil && m.served:
		st.State = StateRestarting
	case m.current == nil:
		st.State = StateStarting
	case m.pending != nil:
		st.State = StateReloading
	}
	for _, s := range m.socks {
		st.Listeners = append(st.Listeners, s.desc)
	}
	for _, g := range m.gens {
		gs := GenerationStatus{Gen: g.n, PID: g.pid, State: g.state, Started: g.started, DrainingSince: g.draining, Age: now.Sub(g.started)}
		if !g.readyAt.IsZero() {
			gs.ReadyAfter = g.readyAt.Sub(g.started)
		}
		st.Generations = append(st.Generations, gs)
	}
	if m.reaper != nil {
		st.Reaped = m.reaper.Orphans()
	}
	st.Restarts, st.DrainKills, st.LimitKills = m.restarts, m.drainKills, m.limitKills
	st.Upgrades, st.Drains = m.upgrades, m.drains.clone()
	st.Goroutines = runtime.NumGoroutine()
	return st
}
