//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The re-bind handoff, written here for the comparison: what rs/seamless
// and many hand-rolled servers do instead of passing the socket on. The
// successor binds the same address with SO_REUSEPORT, says it is ready,
// and only then does the old generation close its listener. Both sockets
// are in one reuseport group meanwhile, and the kernel spreads new
// connections over them; but each socket has its own accept queue, and
// closing the old one resets whatever connections sit in its queue. That
// is the loss this handoff has and a descriptor-passing one does not.
//
//	BENCH_ADDR      the address every generation binds; the first one
//	                binds 127.0.0.1:0 and sets it for its successors
//	BENCH_READY_FD  set by the predecessor: descriptor 3 is a pipe to it,
//	                and one byte written there says "ready"
const (
	envAddr    = "BENCH_ADDR"
	envReadyFD = "BENCH_READY_FD"
)

// reuseportTimeout bounds how long a re-bind successor may take to say
// ready, as the libraries' own upgrade timeouts do.
const reuseportTimeout = time.Minute

type reuseportUpgrader struct {
	parent *os.File // the pipe to the predecessor until Ready; nil for the first
	exitC  chan struct{}
	once   sync.Once
}

func newReuseport() (*reuseportUpgrader, error) {
	u := &reuseportUpgrader{exitC: make(chan struct{})}
	if os.Getenv(envReadyFD) == "3" {
		u.parent = os.NewFile(3, "ready")
		// Our own successor gets its pipe the same way, and only that.
		if err := os.Unsetenv(envReadyFD); err != nil {
			return nil, err
		}
	}
	return u, nil
}

// listener binds BENCH_ADDR with SO_REUSEPORT, and sets BENCH_ADDR to what
// it bound for the successors. There is one address: name is ignored.
func (u *reuseportUpgrader) listener(string) (net.Listener, error) {
	addr := os.Getenv(envAddr)
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		})
		return errors.Join(err, serr)
	}}
	l, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return nil, err
	}
	if err := os.Setenv(envAddr, l.Addr().String()); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// ready tells the predecessor, which then closes its listener.
func (u *reuseportUpgrader) ready() error {
	if u.parent == nil {
		return nil
	}
	_, err := u.parent.Write([]byte{1})
	u.parent.Close()
	u.parent = nil
	return err
}

func (u *reuseportUpgrader) waitForParent() error { return nil }

// upgrade starts a successor, this binary again with our environment, and
// waits for its byte on the pipe. EOF means it exited first.
func (u *reuseportUpgrader) upgrade() error {
	select {
	case <-u.exitC:
		return errors.New("reuseport: stopped")
	default:
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	p, err := os.StartProcess(exe, os.Args, &os.ProcAttr{
		Env:   append(os.Environ(), envReadyFD+"=3"),
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr, w},
	})
	w.Close()
	if err != nil {
		return err
	}
	if err := r.SetReadDeadline(time.Now().Add(reuseportTimeout)); err != nil {
		p.Kill()
		p.Wait()
		return err
	}
	var b [1]byte
	if _, err := r.Read(b[:]); err != nil {
		p.Kill()
		st, _ := p.Wait()
		return fmt.Errorf("reuseport: successor (pid %d) not ready: %w (%v)", p.Pid, err, st)
	}
	// The successor outlives us: our exit hands it to the benchmark, a
	// child subreaper, which reaps it.
	p.Release()
	u.stop()
	return nil
}

func (u *reuseportUpgrader) retry(error) bool      { return false }
func (u *reuseportUpgrader) exit() <-chan struct{} { return u.exitC }
func (u *reuseportUpgrader) stop()                 { u.once.Do(func() { close(u.exitC) }) }
