package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
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

// bindRetryPause is the pause between two tries: the kernel releases
// the socket when the last holder's descriptor is closed, an event this
// process cannot wait on; 50ms makes 40 tries within bindRetry, few
// enough to be cheap, close enough for a restart not to wait long.
const bindRetryPause = 50 * time.Millisecond

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
		time.Sleep(bindRetryPause)
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

// closeSockets closes the master's copies of the sockets; a unix
// socket's file goes with them.
func (m *Master) closeSockets() {
	for _, s := range m.socks {
		unix.Close(s.fd)
		if s.closer != nil {
			s.closer.Close() // a unix socket's file goes with it
		} else if s.unix != "" && m.adopted != nil {
			os.Remove(s.unix) // the first image opened it
		}
	}
	m.socks = nil
}
