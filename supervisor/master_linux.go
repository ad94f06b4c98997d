package supervisor

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/exepath"
	"github.com/batonhq/baton/internal/ownersock"
	"github.com/batonhq/baton/internal/procfs"
	"github.com/batonhq/baton/internal/reaper"
	"github.com/batonhq/baton/systemd"
)

// Master holds the sockets and runs the generations. Create it with New,
// run it with Run. Its fields below "The run loop's own" belong to the
// goroutine in Run (loop_linux.go); every other goroutine, the public
// methods included, talks to it with events.
type Master struct {
	cfg     Config
	log     *slog.Logger
	socks   []*socket
	env     []string
	notify  *systemd.Notifier
	runDir  string
	ctl     *ownersock.Listener
	reaper  *reaper.Reaper
	probeTo string // host:port the probes dial
	probeU  *url.URL

	tcpPorts map[uint16]bool // of the TCP sockets, for counting connections: set by New, then read-only

	// The metrics endpoint (Config.Metrics), if any.
	metricsLn   net.Listener
	metricsLoop bool // its address is loopback
	metricsSrv  *http.Server

	events  chan event
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
	stops    []chan struct{}   // closed once Run has returned
	answers  []<-chan struct{} // closed once a control "stop" was answered
	exit     error
	lastStat Status
	adopted  *masterState // from the image that exec'd this one
	tailing  int          // stderr tails being waited for, off the loop

	// Crashes: a serving worker that exits by itself with a failure is
	// restarted (see Config.RestartLimit and restart.go).
	served     bool       // a generation has served: failures are crashes from now on
	crashes    crashLog   // within cfg.RestartWindow
	crash      *ExitError // the last one
	restartSeq int        // of the armed restart; a stale timer's event is ignored
	restartT   *time.Timer
	restarts   int
	drainKills int
	limitKills int // draining generations killed beyond cfg.MaxDraining
	upgrades   UpgradeStats
	drains     DrainStats

	// hupQueued: a SIGHUP came during a reload; one more follows it.
	hupQueued bool
}

// eventQueue is the run loop's buffer: events come in bursts (a reaper
// handing over the exits of a generation and its children, SIGHUPs), and
// a sender should rarely wait for the loop; the loop never blocks, so
// none waits long.
const eventQueue = 64

// New checks cfg, opens the sockets and the control socket. Nothing is
// started before Run. A Config it cannot use is a *ConfigError; a control
// socket someone answers on wraps ErrControlInUse; an address in use
// wraps syscall.EADDRINUSE.
func New(cfg Config) (*Master, error) {
	var err error
	if cfg.Program == "" {
		return nil, &ConfigError{Field: "Program", Reason: "Config.Program is empty"}
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
	if cfg.Trampoline == "" {
		// The running binary, even if a deploy replaced its file: the
		// trampoline must be the code that knows WorkerCommand.
		if cfg.Trampoline, err = exepath.Running(); err != nil {
			return nil, &ConfigError{Field: "Trampoline", Reason: err.Error()}
		}
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
		events: make(chan event, eventQueue),
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
			return nil, &ConfigError{Field: "Ready", Reason: fmt.Sprintf("ready check %q: want http://HOST:PORT/PATH", cfg.Ready)}
		}
		m.probeU = u
		m.probeTo = u.Host
		if u.Port() == "" {
			m.probeTo = net.JoinHostPort(u.Hostname(), "80")
		}
	default:
		return nil, &ConfigError{Field: "Ready", Reason: fmt.Sprintf("ready check %q: want notify, tcp or an http:// URL", cfg.Ready)}
	}
	if cfg.Metrics != "" {
		// Checked before anything is opened: a bad address is a bad
		// Config, whatever else is wrong.
		if _, _, err := metricsAddr(cfg.Metrics); err != nil {
			return nil, err
		}
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
	if err == nil {
		m.tcpPorts = listenerPorts(m.socks)
		err = m.openMetrics()
	}
	if err != nil {
		m.closeAll()
		return nil, err
	}
	return m, nil
}

// errNoTCPProbe: Config.Ready "tcp" needs a TCP listener to probe.
var errNoTCPProbe = &ConfigError{Field: "Ready", Reason: "ready check tcp: no TCP listener to probe"}

// open opens the control socket and the sockets, and makes the workers'
// environment.
func (m *Master) open() error {
	if err := m.openControl(); err != nil {
		return err
	}
	if err := m.openSockets(); err != nil {
		return err
	}
	if m.cfg.Ready == ReadyTCP {
		for _, s := range m.socks {
			if s.tcp != "" {
				m.probeTo = s.tcp
				break
			}
		}
		if m.probeTo == "" {
			return errNoTCPProbe
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

// closeAll releases the sockets and the control socket.
func (m *Master) closeAll() {
	m.closeMetrics()
	m.closeSockets()
	m.closeControl()
}

// send hands an event to the run loop, or drops it once Run has returned.
func (m *Master) send(e event) {
	select {
	case m.events <- e:
	case <-m.done:
	}
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

// Status returns what the master knows now, with each generation's
// connections and memory as the kernel counts them.
func (m *Master) Status() Status {
	st, _ := m.snapshot(context.Background())
	return st
}

// snapshot asks the run loop for its status, or gives up when ctx ends,
// then adds what the kernel knows of each generation: those reads of
// /proc and sock_diag happen here, off the loop, which must never wait on
// them.
func (m *Master) snapshot(ctx context.Context) (Status, error) {
	reply := make(chan Status, 1)
	select {
	case m.events <- statusReq{reply}:
	case <-m.done:
		return m.lastStat, nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	var st Status
	select {
	case st = <-reply:
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	pids := make([]int, len(st.Generations))
	for i, g := range st.Generations {
		pids[i] = g.PID
	}
	conns := m.establishedOfEach(pids)
	for i := range st.Generations {
		g := &st.Generations[i]
		// A generation reaped since the loop answered has no /proc
		// entry: 0 connections, RSS 0 (unknown).
		g.Connections = conns[g.PID]
		if kib, err := procfs.VmRSS(g.PID); err == nil {
			g.RSS = kib << 10
		}
	}
	return st, nil
}

// Stop stops every generation and returns when Run has.
func (m *Master) Stop() { m.stop(nil) }

// stop is Stop for a control connection: Run waits a moment, once the
// generations are gone, until answered is closed, so that "baton stop"
// hears that the master stopped rather than a closed connection.
func (m *Master) stop(answered <-chan struct{}) {
	done := make(chan struct{})
	select {
	case m.events <- stopReq{done: done, answered: answered}:
		<-done
	case <-m.done:
	}
}

// ExecMaster replaces the master's program with Config.Executable, in
// place: same pid, same sockets, same workers. It does not return when it
// succeeds; it returns an error, and the master goes on as it was, when a
// reload is under way (ErrReloadInProgress), the master is stopping
// (ErrStopped), no generation serves (ErrNotServing), or the new binary
// does not run.
func (m *Master) ExecMaster() error {
	reply := make(chan error, 1)
	select {
	case m.events <- execReq{reply: reply}:
	case <-m.done:
		return ErrStopped
	}
	return <-reply
}

// Signal handles sig as a master does: SIGHUP reloads (the outcome is
// logged; any number of SIGHUPs during a reload make one more reload
// after it, rather than an error), SIGINT and SIGTERM stop, SIGUSR1,
// SIGUSR2 and SIGWINCH go to the serving generation. Others are ignored.
func (m *Master) Signal(sig os.Signal) {
	switch sig {
	case syscall.SIGHUP:
		go m.send(hupEvent{})
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
