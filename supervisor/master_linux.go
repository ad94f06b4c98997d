package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/batonhq/baton/systemd"
	"golang.org/x/sys/unix"
)

// socket is one listening socket the master holds for its workers.
type socket struct {
	name   string // in LISTEN_FDNAMES
	desc   string // for Status: name=network://actual
	fd     int    // what the workers get, close-on-exec here
	closer io.Closer
	tcp    string // the actual address, for a TCP listener
	unix   string // the path of a unix socket, removed on the final stop
}

// Master holds the sockets and runs the generations. Create it with New,
// run it with Run.
type Master struct {
	cfg     Config
	log     *slog.Logger
	socks   []*socket
	env     []string
	notify  *systemd.Notifier
	runDir  string
	ctl     *net.UnixListener
	reaper  *reaper
	probeTo string // host:port the probes dial
	probeU  *url.URL

	events  chan any
	done    chan struct{} // closed when Run has returned
	started time.Time

	// The run loop's own.
	live     map[int]*generation // by pid, until reaped
	gens     []*generation       // in order, until reaped
	next     int
	current  *generation
	pending  *generation
	replies  []chan reloadReply
	reloadAt time.Time
	stopping bool
	stops    []chan struct{}
	exit     error
	lastStat Status
	adopted  *masterState // from the image that exec'd this one
	ctlIno   uint64       // the control socket file's inode: removed only if still ours

	// Crashes: a serving worker that exits by itself with a failure is
	// restarted (see Config.RestartLimit).
	served     bool        // a generation has served: failures are crashes from now on
	crashes    []time.Time // within cfg.RestartWindow
	crash      *ExitError  // the last one
	restartSeq int         // of the armed restart; a stale timer's event is ignored
	restartT   *time.Timer
	restarts   int
	drainKills int

	// hupQueued: a SIGHUP came during a reload; one more follows it.
	hupQueued bool

	// stopAnswers counts control connections that asked to stop and have
	// not answered yet: Run waits for them, briefly, so that "baton stop"
	// hears that the master is gone rather than a closed connection.
	stopAnswers atomic.Int32
}

type (
	readyEvent struct{ g *generation }
	exitEvent  struct {
		g  *generation
		ws syscall.WaitStatus
	}
	timeoutEvent struct{ g *generation }
	reloadReq    struct{ reply chan reloadReply }
	reloadReply  struct {
		res Result
		err error
	}
	statusReq    struct{ reply chan Status }
	restartEvent struct{ seq int }
	hupReq       struct{}
	stopReq      struct{ done chan struct{} }
	signalReq    struct{ sig syscall.Signal }
)

// New checks cfg, opens the sockets and the control socket. Nothing is
// started before Run.
func New(cfg Config) (*Master, error) {
	var err error
	if cfg.Program == "" {
		return nil, errors.New("supervisor: Config.Program is empty")
	}
	if cfg.Ready == "" {
		cfg.Ready = ReadyNotify
	}
	if cfg.UpgradeTimeout <= 0 {
		cfg.UpgradeTimeout = DefaultUpgradeTimeout
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	if cfg.RestartLimit == 0 {
		cfg.RestartLimit = DefaultRestartLimit
	}
	if cfg.RestartWindow <= 0 {
		cfg.RestartWindow = DefaultRestartWindow
	}
	if cfg.StopSignal == 0 {
		cfg.StopSignal = DefaultStopSignal
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.Control == "" {
		cfg.Control = DefaultControlPath(cfg.Name)
	}
	if cfg.Self == "" {
		cfg.Self = "/proc/self/exe"
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.Control, err = filepath.Abs(cfg.Control); err != nil {
		return nil, err
	}
	m := &Master{
		cfg:    cfg,
		log:    cfg.Logger,
		runDir: filepath.Dir(cfg.Control),
		events: make(chan any, 64),
		done:   make(chan struct{}),
		live:   map[int]*generation{},
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	switch {
	case cfg.Ready == ReadyNotify, cfg.Ready == ReadyTCP:
	case strings.HasPrefix(cfg.Ready, "http://"):
		u, err := url.Parse(cfg.Ready)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("supervisor: ready check %q: want http://HOST:PORT/PATH", cfg.Ready)
		}
		m.probeU = u
		m.probeTo = u.Host
		if u.Port() == "" {
			m.probeTo = net.JoinHostPort(u.Hostname(), "80")
		}
	default:
		return nil, fmt.Errorf("supervisor: ready check %q: want notify, tcp or an http:// URL", cfg.Ready)
	}
	if m.notify, err = systemd.NewNotifier(); err != nil {
		return nil, err
	}
	if cfg.Executable == "" {
		m.cfg.Executable = defaultExecutable()
	}
	if js, ok := os.LookupEnv(stateEnv); ok {
		os.Unsetenv(stateEnv)
		err = m.adoptState(js)
	} else {
		err = m.open()
	}
	if err != nil {
		m.closeAll()
		return nil, err
	}
	return m, nil
}

// open opens the control socket and the sockets, and makes the workers'
// environment.
func (m *Master) open() error {
	cfg := m.cfg
	if err := m.openControl(); err != nil {
		return err
	}
	if err := m.openSockets(); err != nil {
		return err
	}
	if cfg.Ready == ReadyTCP {
		for _, s := range m.socks {
			if s.tcp != "" {
				m.probeTo = s.tcp
				break
			}
		}
		if m.probeTo == "" {
			return errors.New("supervisor: ready check tcp: no TCP listener to probe")
		}
	}
	return m.makeEnv()
}

// makeEnv makes the workers' environment: ours, without what was meant
// for us, with LISTEN_FDS and LISTEN_FDNAMES for the sockets.
func (m *Master) makeEnv() error {
	names := make([]string, len(m.socks))
	for i, s := range m.socks {
		names[i] = s.name
	}
	m.env = cleanEnv(os.Environ())
	le, err := systemd.ListenEnv(1, names)
	if err != nil {
		return err
	}
	for _, kv := range le {
		// LISTEN_PID is the trampoline's to set: see ExecWorker.
		if !strings.HasPrefix(kv, "LISTEN_PID=") {
			m.env = append(m.env, kv)
		}
	}
	return nil
}

// openControl makes the owner-only runtime directory and the control
// socket in it.
func (m *Master) openControl() error {
	if err := os.MkdirAll(m.runDir, 0o700); err != nil {
		return fmt.Errorf("supervisor: runtime directory: %w", err)
	}
	fi, err := os.Lstat(m.runDir)
	if err != nil {
		return err
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	if !fi.IsDir() || fi.Mode().Perm()&0o077 != 0 || st == nil || int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("supervisor: the control socket's directory %s must be a directory of ours that only we may enter (chmod 700 %s)", m.runDir, m.runDir)
	}
	if err := clearControl(m.cfg.Control); err != nil {
		return err
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: m.cfg.Control, Net: "unix"})
	if err != nil {
		return fmt.Errorf("supervisor: control socket: %w", err)
	}
	// Removed by closeAll, and only if the file is still this one: the
	// listener would unlink whatever is at the path by then.
	ln.SetUnlinkOnClose(false)
	m.ctl = ln
	m.ctlIno = inodeAt(m.cfg.Control)
	return os.Chmod(m.cfg.Control, 0o600)
}

// clearControl makes room for the control socket at path: nothing there,
// or a socket no one answers on — left by a master that was killed, and
// removed. Anything else is refused and left alone: a socket someone
// answers on, a regular file, a symbolic link (never followed), a
// directory.
func clearControl(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("supervisor: control socket %s: %w", path, err)
	case fi.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("supervisor: control socket %s: %s is in the way; not ours to remove", path, fileKind(fi.Mode()))
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return fmt.Errorf("supervisor: control socket %s: something answers there (another master?); not ours to remove", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("supervisor: control socket %s: removing a stale socket: %w", path, err)
	}
	return nil
}

func fileKind(mode fs.FileMode) string {
	switch {
	case mode&fs.ModeSymlink != 0:
		return "a symbolic link"
	case mode.IsDir():
		return "a directory"
	case mode.IsRegular():
		return "a regular file"
	}
	return "a file of type " + mode.Type().String()
}

// inodeAt is the inode of the file at path (not followed), 0 if none.
func inodeAt(path string) uint64 {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

// openSockets adopts the sockets systemd passed and opens cfg.Listen.
func (m *Master) openSockets() error {
	acts, err := systemd.Listeners()
	if err != nil {
		return err
	}
	for _, a := range acts {
		s := &socket{name: a.Name, fd: a.Fd}
		network, addr, _, err := a.Addr()
		s.desc = fmt.Sprintf("%s=%s://%s (systemd)", a.Name, network, addr)
		if err == nil && network == "tcp" {
			s.tcp = addr
		}
		m.socks = append(m.socks, s)
	}
	var lc net.ListenConfig
	for _, spec := range m.cfg.Listen {
		var c interface {
			io.Closer
			syscall.Conn
		}
		var actual string
		if spec.Packet() {
			pc, err := retryInUse(m.log, spec, func() (net.PacketConn, error) {
				return lc.ListenPacket(context.Background(), spec.Network, spec.Address)
			})
			if err != nil {
				return fmt.Errorf("supervisor: %w", err)
			}
			c, actual = pc.(interface {
				io.Closer
				syscall.Conn
			}), pc.LocalAddr().String()
		} else {
			ln, err := retryInUse(m.log, spec, func() (net.Listener, error) {
				return lc.Listen(context.Background(), spec.Network, spec.Address)
			})
			if err != nil {
				return fmt.Errorf("supervisor: %w", err)
			}
			c, actual = ln.(interface {
				io.Closer
				syscall.Conn
			}), ln.Addr().String()
		}
		// A duplicate through SyscallConn, never (*os.File).Fd, which
		// would make the socket blocking for every worker sharing it.
		fd, err := dupConn(c)
		if err != nil {
			c.Close()
			return err
		}
		s := &socket{name: spec.Name, fd: fd, closer: c}
		if s.name == "" {
			s.name = "unknown"
		}
		s.desc = ListenSpec{Name: spec.Name, Network: spec.Network, Address: actual}.String()
		if strings.HasPrefix(spec.Network, "tcp") {
			s.tcp = actual
		}
		if spec.Network == "unix" && !strings.HasPrefix(actual, "@") {
			s.unix = actual
		}
		m.socks = append(m.socks, s)
	}
	return nil
}

// bindRetry is how long an address in use is tried again at start. The
// processes that held it (the workers of a master that was killed, just
// stopped by the supervisor that restarts this one) may be gone while the
// kernel has not released their socket yet: seen to take most of a
// second on a busy machine. Workers that still run hold it for good, and
// the error comes after this delay.
const bindRetry = 2 * time.Second

// retryInUse calls listen until it does not fail with EADDRINUSE, or
// bindRetry has passed.
func retryInUse[T any](log *slog.Logger, spec ListenSpec, listen func() (T, error)) (T, error) {
	deadline := time.Now().Add(bindRetry)
	for warned := false; ; warned = true {
		c, err := listen()
		if err == nil || !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			return c, err
		}
		if !warned {
			log.Warn("address in use: trying again for a while (is a previous holder closing it?)", "listen", spec.String(), "for", bindRetry)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func dupConn(c syscall.Conn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := raw.Control(func(fd uintptr) {
		nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", derr)
	}
	return nfd, nil
}

func (m *Master) closeAll() {
	for _, s := range m.socks {
		unix.Close(s.fd)
		if s.closer != nil {
			s.closer.Close() // a unix socket's file goes with it
		} else if s.unix != "" && m.adopted != nil {
			os.Remove(s.unix) // the first image opened it
		}
	}
	m.socks = nil
	if m.ctl != nil {
		m.ctl.Close()
		// Only our own socket: another master may have taken the path
		// since (after this one's file was removed), and its socket is
		// not ours to remove.
		if m.ctlIno != 0 && inodeAt(m.cfg.Control) == m.ctlIno {
			os.Remove(m.cfg.Control)
		}
		m.ctl = nil
	}
}

// send hands an event to the run loop, or drops it once Run has returned.
func (m *Master) send(e any) {
	select {
	case m.events <- e:
	case <-m.done:
	}
}

// Run starts the first generation and supervises until the master is
// stopped (Stop, the control socket, or ctx), or the serving generation
// exits by itself. It returns nil when the last serving generation exited
// with status 0, an *ExitError when it exited otherwise, and a
// *GenerationError when the first generation never served.
func (m *Master) Run(ctx context.Context) error {
	if m.started.IsZero() {
		m.started = time.Now()
	}
	if err := becomeSubreaper(); err != nil {
		m.log.Warn("cannot become a child subreaper: orphans of the workers will not be reaped here", "err", err)
	}
	m.reaper = newReaper(m.log)
	if m.adopted != nil {
		m.resume()
	} else {
		m.reaper.start()
		go m.serveControl(m.ctl)
		m.notify.Status("starting")
		m.beginGeneration(nil)
	}
	ctxDone := ctx.Done()
	for !m.stopping || len(m.live) > 0 {
		select {
		case <-ctxDone:
			ctxDone = nil
			m.beginStop("stop requested")
		case e := <-m.events:
			m.handle(e)
		}
	}
	m.reapOrphans()
	m.reaper.stop()
	m.lastStat = m.status()
	m.lastStat.State = "stopped"
	m.closeAll()
	close(m.done)
	for _, c := range m.stops {
		close(c)
	}
	for deadline := time.Now().Add(2 * time.Second); m.stopAnswers.Load() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	return m.exit
}

func (m *Master) handle(e any) {
	switch e := e.(type) {
	case readyEvent:
		m.ready(e.g)
	case exitEvent:
		m.exited(e.g, e.ws)
	case timeoutEvent:
		m.timedOut(e.g)
	case reloadReq:
		switch {
		case m.stopping:
			e.reply <- reloadReply{err: ErrStopped}
		case m.pending != nil:
			e.reply <- reloadReply{err: ErrReloadInProgress}
		default:
			m.beginGeneration(e.reply)
		}
	case statusReq:
		e.reply <- m.status()
	case stopReq:
		m.stops = append(m.stops, e.done)
		m.beginStop("stop requested")
	case execReq:
		e.reply <- m.execMaster(e)
	case restartEvent:
		if e.seq == m.restartSeq && !m.stopping && m.current == nil && m.pending == nil {
			m.restartT = nil
			m.restarts++
			m.log.Info("restarting the worker", "restart", len(m.crashes), "of", m.cfg.RestartLimit, "window", m.cfg.RestartWindow)
			m.beginGeneration(nil)
		}
	case hupReq:
		switch {
		case m.stopping:
			m.log.Info("SIGHUP ignored: the master is stopping")
		case m.pending != nil:
			// Not refused as a control request is: whoever sent it may
			// have changed something the reload under way started too
			// early to see. Any number of them make one more reload.
			if !m.hupQueued {
				m.hupQueued = true
				m.log.Info("SIGHUP during a reload: one more reload follows it", "generation", m.pending.n)
			}
		default:
			m.beginGeneration(m.logReload("SIGHUP"))
		}
	case signalReq:
		if m.current != nil && !m.current.signaled {
			m.log.Info("forwarding a signal", "signal", e.sig.String(), "pid", m.current.pid)
			unix.Kill(m.current.pid, e.sig)
		}
	}
}

// beginGeneration starts the next generation; reply, if not nil, gets
// the outcome.
func (m *Master) beginGeneration(reply chan reloadReply) {
	m.next++
	g := &generation{n: m.next, state: "starting"}
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

// fail ends a generation that never served; the serving one goes on. The
// first generation failing stops the master.
func (m *Master) fail(g *generation, reply chan reloadReply, gerr *GenerationError) {
	g.state = "failed"
	if m.pending == g {
		m.pending = nil
	}
	replies := m.replies
	m.replies = nil
	if reply != nil {
		replies = append(replies, reply)
	}
	res := Result{Gen: g.n, NewPID: g.pid, Duration: time.Since(m.reloadAt), Error: gerr.Error()}
	if m.current != nil {
		res.OldPID = m.current.pid
		m.notify.Send("READY=1", "STATUS="+statusLine("reload failed: "+gerr.Reason+"; still serving", m.current))
	}
	// The tail may take a moment to come through the pipe (at most
	// 200ms, for a worker's child still holding it).
	gerr.Stderr = g.stderrTail()
	res.Stderr = gerr.Stderr
	for _, r := range replies {
		r <- reloadReply{res: res, err: gerr}
	}
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

// crashed handles a serving worker that exited by itself with a failure
// (m.crash), or a failed attempt to replace it: a restart after a
// backoff, unless a generation being started takes over anyway, or the
// crashes within cfg.RestartWindow exceed cfg.RestartLimit.
func (m *Master) crashed(g *generation, why string) {
	now := time.Now()
	keep := m.crashes[:0]
	for _, t := range m.crashes {
		if now.Sub(t) < m.cfg.RestartWindow {
			keep = append(keep, t)
		}
	}
	m.crashes = append(keep, now)
	n := len(m.crashes)
	if m.cfg.RestartLimit < 0 {
		m.exit = m.crash
		m.beginStop("the serving generation exited: " + m.crash.Status)
		return
	}
	if n > m.cfg.RestartLimit {
		m.log.Error("the worker keeps failing: giving up", "generation", g.n, "pid", g.pid, "why", why, "failures", n, "window", m.cfg.RestartWindow, "limit", m.cfg.RestartLimit, "status", m.crash.Status)
		m.exit = m.crash
		m.beginStop(fmt.Sprintf("%d failures of the worker within %v", n, m.cfg.RestartWindow))
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

func (m *Master) ready(g *generation) {
	if g != m.pending || m.stopping {
		return
	}
	g.timer.Stop()
	g.state, g.readyAt = "serving", time.Now()
	m.pending = nil
	m.served = true
	old := m.current
	m.current = g
	m.log.Info("generation ready", "generation", g.n, "pid", g.pid, "after", g.readyAt.Sub(g.started).Round(time.Millisecond))
	m.notify.Send("READY=1", "STATUS="+statusLine("serving", g))
	res := Result{OK: true, Gen: g.n, NewPID: g.pid, Duration: time.Since(m.reloadAt)}
	if old != nil {
		res.OldPID = old.pid
		m.retire(old, "draining")
	}
	for _, r := range m.replies {
		r <- reloadReply{res: res}
	}
	m.replies = nil
	m.reloadDone()
}

// retire tells g to drain and exit, and arms its deadline.
func (m *Master) retire(g *generation, state string) {
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
}

func (m *Master) timedOut(g *generation) {
	if _, ok := m.live[g.pid]; !ok {
		return // reaped meanwhile
	}
	switch {
	case g == m.pending:
		m.log.Warn("generation not ready in time: killing it", "generation", g.n, "pid", g.pid, "timeout", m.cfg.UpgradeTimeout)
		g.signaled = true
		reason := "not ready within " + m.cfg.UpgradeTimeout.String()
		if _, state := procStat(g.pid); state == "T" || state == "t" {
			reason += " (it was stopped by a signal: SIGSTOP or a debugger)"
		}
		unix.Kill(g.pid, unix.SIGKILL)
		m.fail(g, nil, &GenerationError{Gen: g.n, PID: g.pid, Reason: reason})
	case g.signaled:
		// Whatever it still serves is lost: say how much.
		conns := m.connectionsOf(g.pid)
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
	m.log.Info("generation exited", "generation", g.n, "pid", g.pid, "status", status)
	switch {
	case g == m.pending:
		if m.current == nil && m.served && !m.stopping {
			m.crash = &ExitError{PID: g.pid, Status: status, Code: exitCode(ws), Stderr: g.stderrTail()}
		}
		m.fail(g, nil, &GenerationError{Gen: g.n, PID: g.pid, Reason: "exited before it was ready: " + status})
	case g == m.current:
		m.current = nil
		code := exitCode(ws)
		var xerr *ExitError
		if code != 0 {
			xerr = &ExitError{PID: g.pid, Status: status, Code: code, Stderr: g.stderrTail()}
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
		g.signaled = true
		unix.Kill(g.pid, unix.SIGKILL)
		m.fail(g, nil, &GenerationError{Gen: g.n, PID: g.pid, Reason: "the master is stopping", Err: ErrStopped})
	}
	for _, g := range m.gens {
		m.retire(g, "stopping")
	}
}

// reapOrphans ends what the workers left behind (daemonised children,
// reparented here): SIGTERM, then SIGKILL after a while.
func (m *Master) reapOrphans() {
	deadline := time.Now().Add(min(m.cfg.DrainTimeout, 5*time.Second))
	sig := unix.SIGTERM
	for {
		kids := children(os.Getpid())
		if len(kids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			if sig == unix.SIGKILL {
				m.log.Warn("processes left after SIGKILL", "pids", kids)
				return
			}
			sig, deadline = unix.SIGKILL, time.Now().Add(2*time.Second)
			m.log.Warn("killing what the workers left behind", "pids", kids)
			for _, p := range kids {
				unix.Kill(p, sig)
			}
		} else if sig == unix.SIGTERM {
			for _, p := range kids {
				unix.Kill(p, sig)
			}
			sig = 0
		}
		m.reaper.reapAll()
		time.Sleep(20 * time.Millisecond)
	}
}

// children lists the live pids whose parent is pid (zombies not counted:
// the reaper takes them).
func children(pid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		c, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, state := procStat(c); ppid == pid && state != "Z" {
			out = append(out, c)
		}
	}
	return out
}

// connectionsOf counts the TCP connections pid holds that came from the
// master's TCP listeners: the sockets among its descriptors whose local
// port is a listener's. Connections of its children, and over unix
// sockets, are not counted; -1 if the kernel would not say.
func (m *Master) connectionsOf(pid int) int {
	ports := map[uint16]bool{}
	for _, s := range m.socks {
		if _, p, err := net.SplitHostPort(s.tcp); err == nil {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				ports[uint16(n)] = true
			}
		}
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	inodes := map[uint32]bool{}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		l, _ := os.Readlink(dir + e.Name())
		if ino, ok := strings.CutPrefix(l, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(ino, "]"), 10, 32); err == nil {
				inodes[uint32(n)] = true
			}
		}
	}
	if len(ports) == 0 || len(inodes) == 0 {
		return 0
	}
	n, err := acceptedConns(ports, inodes)
	if err != nil {
		m.log.Debug("cannot count the connections of a generation", "pid", pid, "err", err)
		return -1
	}
	return n
}

// procStat returns the parent pid and state of pid, from /proc.
func procStat(pid int) (ppid int, state string) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, ""
	}
	return parseProcStat(b)
}

// parseProcStat reads the parent pid and state out of /proc/PID/stat. The
// command name before them is in parentheses and may hold anything, ')'
// and spaces included: the fields start after the last ')'.
func parseProcStat(b []byte) (ppid int, state string) {
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, ""
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, ""
	}
	ppid, _ = strconv.Atoi(f[1])
	return ppid, f[0]
}

func statusLine(what string, g *generation) string {
	return fmt.Sprintf("%s, generation %d, pid %d", what, g.n, g.pid)
}

func (m *Master) status() Status {
	st := Status{PID: os.Getpid(), Started: m.started, Control: m.cfg.Control, State: "serving"}
	switch {
	case m.stopping:
		st.State = "stopping"
	case m.current == nil && m.served:
		st.State = "restarting"
	case m.current == nil:
		st.State = "starting"
	case m.pending != nil:
		st.State = "reloading"
	}
	for _, s := range m.socks {
		st.Listeners = append(st.Listeners, s.desc)
	}
	for _, g := range m.gens {
		gs := GenerationStatus{Gen: g.n, PID: g.pid, State: g.state, Started: g.started, DrainingSince: g.draining}
		if !g.readyAt.IsZero() {
			gs.ReadyAfter = g.readyAt.Sub(g.started)
		}
		st.Generations = append(st.Generations, gs)
	}
	if m.reaper != nil {
		st.Reaped = m.reaper.reaped()
	}
	st.Restarts, st.DrainKills = m.restarts, m.drainKills
	st.Goroutines = runtime.NumGoroutine()
	return st
}

// Reload starts a new generation and returns when it serves — the old one
// has then been told to drain — or has failed (a *GenerationError; the
// old one serves on). A reload under way makes it return
// ErrReloadInProgress. If ctx ends first, the reload goes on without it.
func (m *Master) Reload(ctx context.Context) (Result, error) {
	reply := make(chan reloadReply, 1)
	select {
	case m.events <- reloadReq{reply}:
	case <-m.done:
		return Result{}, ErrStopped
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	select {
	case r := <-reply:
		return r.res, r.err
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
}

// Status returns what the master knows now.
func (m *Master) Status() Status {
	reply := make(chan Status, 1)
	select {
	case m.events <- statusReq{reply}:
		return <-reply
	case <-m.done:
		return m.lastStat
	}
}

// Stop stops every generation and returns when Run has.
func (m *Master) Stop() {
	done := make(chan struct{})
	select {
	case m.events <- stopReq{done}:
		<-done
	case <-m.done:
	}
}

// Signal handles sig as a master does: SIGHUP reloads (the outcome is
// logged; any number of SIGHUPs during a reload make one more reload
// after it, rather than an error), SIGINT and SIGTERM stop, SIGUSR1, SIGUSR2 and SIGWINCH go to
// the serving generation. Others are ignored.
func (m *Master) Signal(sig os.Signal) {
	switch sig {
	case syscall.SIGHUP:
		go m.send(hupReq{})
	case syscall.SIGINT, syscall.SIGTERM:
		go m.Stop()
	case syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH:
		m.send(signalReq{sig.(syscall.Signal)})
	}
}

// HandleSignals routes SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2 and
// SIGWINCH to Signal until Run returns.
func (m *Master) HandleSignals() {
	ch := make(chan os.Signal, 8)
	signal.Notify(ch, syscall.SIGHUP, syscall.SIGINT, syscall.SIGTERM, syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH)
	go func() {
		defer signal.Stop(ch)
		for {
			select {
			case s := <-ch:
				m.Signal(s)
			case <-m.done:
				return
			}
		}
	}()
}
