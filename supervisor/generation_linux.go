package supervisor

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/exepath"
	"golang.org/x/sys/unix"
)

// generation is what the master knows of one worker process. Its fields
// are the run loop's, except where said.
type generation struct {
	n           int
	pid         int
	state       State
	started     time.Time
	readyAt     time.Time
	draining    time.Time
	timer       *time.Timer // upgrade timeout, then drain deadline
	signaled    bool        // StopSignal or SIGKILL sent
	killed      bool        // SIGKILL sent once it drained: no longer counts as draining
	reload      bool        // started while another generation served: an upgrade
	probationAt time.Time   // when its probation began, if it had one

	stderr     ring // written by the copier, read by anyone
	stderrPipe *os.File
	stderrDone chan struct{}
	notify     *net.UnixConn
	notifyPath string
	probeStop  chan struct{} // closed when the probe must end
}

// ring keeps the tail of a stream, for the last lines of a worker's stderr.
type ring struct {
	mu  sync.Mutex
	buf []byte
}

const ringSize = 16 << 10

func (r *ring) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.buf = append(r.buf, p...)
	if len(r.buf) > ringSize {
		r.buf = append(r.buf[:0], r.buf[len(r.buf)-ringSize:]...)
	}
	return len(p), nil
}

// lines returns the last n complete or partial lines.
func (r *ring) lines(n int) []string {
	r.mu.Lock()
	s := string(bytes.TrimRight(r.buf, "\n"))
	r.mu.Unlock()
	if s == "" {
		return nil
	}
	l := strings.Split(s, "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return l
}

// start starts generation g: the trampoline (Config.Trampoline) with the
// sockets at 3 and up, a pipe as stderr and a private NOTIFY_SOCKET.
// onExit is called from the reaper when it exits.
func (m *Master) start(g *generation, onExit func(syscall.WaitStatus)) error {
	// Looked up at each start: a new binary installed under the same
	// name is what a reload runs.
	path, err := exepath.Resolve(m.cfg.Program, "")
	if err != nil {
		return err
	}
	if err := exepath.Check(path); err != nil {
		// Worded as os/exec words it: exec: "PATH": why.
		return &exec.Error{Name: path, Err: err}
	}
	g.notifyPath = filepath.Join(m.runDir, fmt.Sprintf("notify-%d.sock", g.n))
	os.Remove(g.notifyPath)
	nc, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: g.notifyPath, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	if err := passCred(nc); err != nil {
		nc.Close()
		os.Remove(g.notifyPath)
		return err
	}
	g.notify = nc
	pr, pw, err := os.Pipe()
	if err != nil {
		g.closeNotify()
		return err
	}
	files := []uintptr{0, 1, pw.Fd()}
	for _, s := range m.socks {
		files = append(files, uintptr(s.fd))
	}
	argv := append([]string{m.cfg.Trampoline, WorkerCommand, path, m.cfg.Program}, m.cfg.Args...)
	attr := &syscall.ProcAttr{
		Env:   append(m.env[:len(m.env):len(m.env)], "NOTIFY_SOCKET="+g.notifyPath),
		Files: files,
		Sys:   &syscall.SysProcAttr{},
	}
	g.started = time.Now()
	pid, err := m.reaper.Spawn(func() (int, error) {
		pid, _, err := syscall.StartProcess(m.cfg.Trampoline, argv, attr)
		return pid, err
	}, onExit)
	pw.Close()
	if err != nil {
		pr.Close()
		g.closeNotify()
		return err
	}
	g.pid = pid
	m.watch(g, pr, nc, true)
	return nil
}

// watch starts what follows a running generation: the copy of its stderr,
// the reading of its notifications and, for a generation that is not
// ready yet, the probe.
func (m *Master) watch(g *generation, stderr *os.File, nc *net.UnixConn, starting bool) {
	g.stderrPipe = stderr
	g.stderrDone = make(chan struct{})
	go func() {
		defer close(g.stderrDone)
		// Not closed here: an in-place exec of the master passes it on.
		io.Copy(io.MultiWriter(&g.stderr, m.cfg.Stderr), stderr)
	}()
	go m.readNotify(g, nc)
	g.probeStop = make(chan struct{})
	if starting && m.cfg.Ready != ReadyNotify {
		go m.probe(g)
	}
}

// passCred asks the kernel to attach the sender's credentials to every
// datagram (SCM_CREDENTIALS): a READY=1 counts only from the worker's pid.
func passCred(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	return os.NewSyscallError("setsockopt(SO_PASSCRED)", serr)
}

// readNotify reads the generation's notifications until its socket is
// closed, and tells the run loop when READY=1 comes from the worker.
func (m *Master) readNotify(g *generation, nc *net.UnixConn) {
	if nc == nil {
		return // adopted without one: see resume
	}
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*253))
	ready := false
	for {
		n, oobn, flags, _, err := nc.ReadMsgUnix(buf, oob)
		if err != nil {
			return
		}
		pid, isReady, fds := parseNotification(buf[:n], oob[:oobn])
		// Descriptors (a BARRIER=1 pipe, FDSTORE=1 sockets) are not
		// kept: closing a barrier's pipe is exactly its answer.
		for _, fd := range fds {
			unix.Close(fd)
		}
		if flags&unix.MSG_CTRUNC != 0 || int(pid) != g.pid {
			m.log.Debug("ignored a notification", "generation", g.n, "sender", pid, "truncated", flags&unix.MSG_CTRUNC != 0)
			continue
		}
		if isReady && !ready && m.cfg.Ready == ReadyNotify {
			ready = true
			m.send(readyEvent{g})
		}
	}
}

// parseNotification decodes one datagram on a generation's notify socket:
// the sender's pid from its credentials (-1 without them), whether one of
// its lines is READY=1, and the descriptors that came with it, which the
// caller closes.
func parseNotification(data, oob []byte) (sender int32, ready bool, fds []int) {
	sender = -1
	msgs, _ := unix.ParseSocketControlMessage(oob)
	for i := range msgs {
		// x/sys/unix reads credentials and descriptors without checking
		// the length (it panics, or reads past the data): the kernel
		// writes whole ones, so only whole ones are taken.
		m := &msgs[i]
		if m.Header.Type == unix.SCM_CREDENTIALS && len(m.Data) < unix.SizeofUcred {
			continue
		}
		if cred, err := unix.ParseUnixCredentials(m); err == nil {
			sender = cred.Pid
		}
		m.Data = m.Data[:len(m.Data)/4*4]
		if more, err := unix.ParseUnixRights(m); err == nil {
			fds = append(fds, more...)
		}
	}
	for _, f := range strings.Split(string(data), "\n") {
		if f == "READY=1" {
			ready = true
		}
	}
	return sender, ready, fds
}

func (g *generation) closeNotify() {
	if g.notify != nil {
		g.notify.Close()
		os.Remove(g.notifyPath)
		g.notify = nil
	}
}

// closePipes releases what the master holds for a generation that has
// exited: its notify socket and, once the copy has reached the end, its
// stderr pipe.
func (g *generation) closePipes() {
	g.closeNotify()
	if g.probeStop != nil {
		close(g.probeStop)
		g.probeStop = nil
	}
	if p := g.stderrPipe; p != nil {
		g.stderrPipe = nil
		go func() {
			// A child of the worker may hold the pipe open: the copy
			// ends with it, and the read end is closed then.
			<-g.stderrDone
			p.Close()
		}()
	}
}

// stderrTailWait bounds the wait for a generation's stderr pipe to end
// after the generation did: the worker's own writes are in by then, and a
// child of it that holds the pipe open (a daemon it started) would hold
// the report for good. 200ms is far more than the kernel takes to hand
// over what was written, and short beside a reload.
const stderrTailWait = 200 * time.Millisecond
