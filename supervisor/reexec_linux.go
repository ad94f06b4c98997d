package supervisor

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/exepath"
	"github.com/batonhq/baton/internal/ownersock"
	"golang.org/x/sys/unix"
)

// An in-place upgrade of the master itself (ExecMaster, "baton reload
// --master"), a call of its own as replacing the process image is: the
// master execs its new binary, which keeps its pid — so
// systemd's MainPID, a container's PID 1 and the workers' parent stay the
// same — and passes on, in the environment variable stateEnv and as
// descriptors without close-on-exec: the sockets, the control socket, the
// connection that asked (the new image answers it), and for every live
// generation its pid, state, stderr pipe and notify socket. The new image
// adopts the generations, whose exits it reaps as its own children.
//
// The reaper is stopped before the state is written, so no exit can be
// reaped and lost in between; exits it had already reaped are handled
// first. Before exec the new binary must prove it runs: it is started as
// a trampoline for /bin/true and must exit 0.

type masterState struct {
	Started time.Time `json:"started"`
	Next    int       `json:"next"`
	Current int       `json:"current"` // generation number, 0 for none
	Reaped  int       `json:"reaped"`
	// The restart accounting (see Config.RestartLimit), and the control
	// socket file's inode.
	Crashes    []time.Time `json:"crashes,omitempty"`
	Restarts   int         `json:"restarts,omitempty"`
	DrainKills int         `json:"drain_kills,omitempty"`
	// What Status counts besides.
	LimitKills int          `json:"limit_kills,omitempty"`
	Upgrades   UpgradeStats `json:"upgrades"`
	Drains     DrainStats   `json:"drains"`
	ControlIno uint64       `json:"control_ino,omitempty"`
	Control    int          `json:"control_fd"`
	Answer     int          `json:"answer_fd"` // -1 for none
	Sockets    []sockState  `json:"sockets"`
	Gens       []genState   `json:"generations"`
}

type sockState struct {
	Name string `json:"name"`
	Desc string `json:"desc"`
	TCP  string `json:"tcp,omitempty"`
	Unix string `json:"unix,omitempty"`
	Fd   int    `json:"fd"`
}

type genState struct {
	N          int       `json:"n"`
	PID        int       `json:"pid"`
	State      State     `json:"state"`
	Started    time.Time `json:"started"`
	ReadyAt    time.Time `json:"ready_at"`
	Draining   time.Time `json:"draining"`
	Signaled   bool      `json:"signaled"`
	Stderr     int       `json:"stderr_fd"`
	Notify     int       `json:"notify_fd"`
	NotifyPath string    `json:"notify_path"`
}

// trialTimeout bounds the trial run of the master's new binary: the
// Go runtime's start and one exec of /bin/true take milliseconds; a
// binary that has not finished in 10s is broken or hangs, and would not
// adopt the state either.
const trialTimeout = 10 * time.Second

// execRefusal says why the master cannot exec itself now, or nil.
func (m *Master) execRefusal() error {
	switch {
	case m.stopping:
		return ErrStopped
	case m.pending != nil, m.tailing > 0:
		// tailing: a reload that failed has not answered yet.
		return ErrReloadInProgress
	case m.current == nil:
		return ErrNotServing
	}
	return nil
}

// beginExec is ExecMaster in the run loop: the trial run of the new
// binary happens off the loop, and ends with a trialEvent.
func (m *Master) beginExec(req execReq) {
	if err := m.execRefusal(); err != nil {
		req.reply <- err
		return
	}
	go func() { m.send(trialEvent{req, m.checkExecutable()}) }()
}

// endExec follows the trial run: unless it failed, or the master's state
// changed meanwhile so that it may not exec now, it execs the new binary.
// It returns only if that failed.
func (m *Master) endExec(req execReq, trial error) {
	if trial == nil {
		trial = m.execRefusal()
	}
	if trial != nil {
		req.reply <- trial
		return
	}
	req.reply <- m.execMaster(req)
}

// execMaster hands the state over and execs the new binary. It returns
// only if it could not.
func (m *Master) execMaster(req execReq) error {
	// From here, exits are only queued: handle those the reaper had
	// already taken, then write down who lives.
	m.reaper.Stop()
	var later []event
	defer func() {
		// Back on the loop, if the exec failed: what came meanwhile.
		for _, e := range later {
			e.apply(m)
		}
	}()
	for len(m.events) > 0 {
		e := <-m.events
		if _, ok := e.(exitEvent); ok {
			e.apply(m)
		} else {
			later = append(later, e)
		}
	}
	if m.stopping {
		m.reaper.Start()
		return errors.New("supervisor: the serving generation exited during the master's exec")
	}
	st := masterState{Started: m.started, Next: m.next, Reaped: m.reaper.Orphans(), Answer: -1,
		Crashes: m.crashes, Restarts: m.restarts, DrainKills: m.drainKills, ControlIno: m.ctl.Inode(),
		LimitKills: m.limitKills, Upgrades: m.upgrades, Drains: m.drains}
	if m.current != nil {
		st.Current = m.current.n
	}
	var fds []int
	keep := func(fd int) int { fds = append(fds, fd); return fd }
	var err error
	if st.Control, err = connFd(m.ctl); err != nil {
		m.reaper.Start()
		return err
	}
	keep(st.Control)
	if req.answer != nil {
		if st.Answer, err = connFd(req.answer); err == nil {
			keep(st.Answer)
		}
	}
	for _, s := range m.socks {
		st.Sockets = append(st.Sockets, sockState{Name: s.name, Desc: s.desc, TCP: s.tcp, Unix: s.unix, Fd: keep(s.fd)})
	}
	for _, g := range m.gens {
		gs := genState{N: g.n, PID: g.pid, State: g.state, Started: g.started, ReadyAt: g.readyAt, Draining: g.draining, Signaled: g.signaled, Stderr: -1, Notify: -1, NotifyPath: g.notifyPath}
		if g.stderrPipe != nil {
			if fd, err := connFd(g.stderrPipe); err == nil {
				gs.Stderr = keep(fd)
			}
		}
		if g.notify != nil {
			if fd, err := connFd(g.notify); err == nil {
				gs.Notify = keep(fd)
			}
		}
		st.Gens = append(st.Gens, gs)
	}
	b, _ := json.Marshal(st)
	for _, fd := range fds {
		unix.FcntlInt(uintptr(fd), unix.F_SETFD, 0)
	}
	env := append(os.Environ(), stateEnv+"="+string(b))
	m.log.Info("executing the master's new binary in place", "path", m.cfg.Executable, "pid", os.Getpid())
	err = syscall.Exec(m.cfg.Executable, os.Args, env)
	for _, fd := range fds {
		unix.FcntlInt(uintptr(fd), unix.F_SETFD, unix.FD_CLOEXEC)
	}
	m.reaper.Start()
	return fmt.Errorf("supervisor: exec %s: %w", m.cfg.Executable, err)
}

// checkExecutable runs the new binary as a trampoline for /bin/true: it
// must start and exit 0 within trialTimeout. It waits: call it off the
// run loop.
func (m *Master) checkExecutable() error {
	truePath, err := exec.LookPath("true")
	if err != nil {
		return fmt.Errorf("supervisor: cannot check the new binary: %w", err)
	}
	exited := make(chan syscall.WaitStatus, 1)
	pid, err := m.reaper.Spawn(func() (int, error) {
		pid, _, err := syscall.StartProcess(m.cfg.Executable, []string{m.cfg.Executable, WorkerCommand, truePath, "true"}, &syscall.ProcAttr{
			Env:   m.env,
			Files: []uintptr{0, 1, 2},
		})
		return pid, err
	}, func(ws syscall.WaitStatus) { exited <- ws })
	if err != nil {
		return fmt.Errorf("supervisor: the new binary %s: %w", m.cfg.Executable, err)
	}
	select {
	case ws := <-exited:
		if exitCode(ws) != 0 {
			return fmt.Errorf("supervisor: the new binary %s does not run: %s", m.cfg.Executable, describe(ws))
		}
		return nil
	case <-time.After(trialTimeout):
		unix.Kill(pid, unix.SIGKILL)
		return fmt.Errorf("supervisor: the new binary %s did not finish a trial run within %v", m.cfg.Executable, trialTimeout)
	}
}

// connFd returns the descriptor of c without (*os.File).Fd, which would
// make it blocking.
func connFd(c syscall.Conn) (int, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil {
		return -1, err
	}
	return fd, nil
}

// adoptState is New for an image the previous one exec'd: the sockets
// and the control socket come from it.
func (m *Master) adoptState(js string) error {
	var st masterState
	if err := json.Unmarshal([]byte(js), &st); err != nil {
		return fmt.Errorf("supervisor: %s: %w", stateEnv, err)
	}
	m.adopted = &st
	m.started, m.next = st.Started, st.Next
	m.crashes, m.restarts, m.drainKills = st.Crashes, st.Restarts, st.DrainKills
	m.limitKills, m.upgrades, m.drains = st.LimitKills, st.Upgrades, st.Drains
	m.served = true // an exec is refused unless a generation serves
	// ControlIno 0: from an image that did not pass it on; the file at
	// the path is taken as ours.
	f := os.NewFile(uintptr(st.Control), "control")
	ln, err := ownersock.Adopt(f, m.cfg.Control, st.ControlIno)
	f.Close()
	if err != nil {
		return fmt.Errorf("supervisor: adopting the control socket: %w", err)
	}
	m.ctl = ln
	for _, s := range st.Sockets {
		unix.CloseOnExec(s.Fd)
		m.socks = append(m.socks, &socket{name: s.Name, desc: s.Desc, tcp: s.TCP, unix: s.Unix, fd: s.Fd})
		if m.cfg.Ready == ReadyTCP && m.probeTo == "" && s.TCP != "" {
			m.probeTo = s.TCP
		}
	}
	if m.cfg.Ready == ReadyTCP && m.probeTo == "" {
		return errNoTCPProbe
	}
	return m.makeEnv()
}

// resume is Run's start for an adopted state: the generations are tracked
// again, the control socket served, and the request that caused the exec
// answered.
func (m *Master) resume() {
	st := m.adopted
	for _, gs := range st.Gens {
		g := &generation{n: gs.N, pid: gs.PID, state: gs.State, started: gs.Started, readyAt: gs.ReadyAt, draining: gs.Draining, signaled: gs.Signaled, notifyPath: gs.NotifyPath}
		m.live[g.pid] = g
		m.gens = append(m.gens, g)
		if g.n == st.Current {
			m.current = g
		}
		m.reaper.Track(g.pid, func(ws syscall.WaitStatus) { m.send(exitEvent{g, ws}) })
		var pipe *os.File
		if gs.Stderr >= 0 {
			unix.CloseOnExec(gs.Stderr)
			pipe = os.NewFile(uintptr(gs.Stderr), "stderr")
		}
		var nc *net.UnixConn
		if gs.Notify >= 0 {
			f := os.NewFile(uintptr(gs.Notify), "notify")
			if c, err := net.FileConn(f); err == nil {
				nc, _ = c.(*net.UnixConn)
			}
			f.Close()
		}
		g.notify = nc
		if pipe == nil {
			pipe, _ = os.Open(os.DevNull)
		}
		m.watch(g, pipe, nc, false)
		if g.signaled {
			left := max(m.cfg.DrainTimeout-time.Since(g.draining), 0)
			g.timer = time.AfterFunc(left, func() { m.send(timeoutEvent{g}) })
		}
	}
	m.reaper.AddOrphans(st.Reaped)
	m.reaper.Start()
	go m.serveControl(m.ctl)
	if m.current == nil && !m.stopping {
		m.beginStop("no serving generation after the master's exec")
	}
	m.log.Info("the master's new binary runs", "pid", os.Getpid(), "generations", len(m.gens))
	if st.Answer >= 0 {
		unix.CloseOnExec(st.Answer)
		f := os.NewFile(uintptr(st.Answer), "answer")
		if c, err := net.FileConn(f); err == nil {
			status := m.status()
			c.SetWriteDeadline(time.Now().Add(controlIOTimeout))
			c.Write(encodeLine(Response{OK: true, Status: &status}))
			c.Close()
		}
		f.Close()
	}
	m.notify.Send("READY=1", "STATUS="+m.statusText())
}

func (m *Master) statusText() string {
	if m.current == nil {
		return "starting"
	}
	return statusLine("serving", m.current)
}

// defaultExecutable is what the master execs itself into: os.Args[0] as
// it was resolved when the master started — against the working
// directory, or in PATH — with symlinks kept, so that a
// "current -> releases/N" layout runs the release current points at then;
// the running binary if that file is gone. Whether it runs is for the
// trial run of ExecMaster to say.
func defaultExecutable() string {
	p, _ := exepath.Self("")
	return p
}
