//go:build linux || darwin

package baton

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
)

// What the application calls to get its sockets: Listen and ListenPacket
// by address, Add and the lookups by name. The registry behind them is in
// fds.go.

// Listen returns a listener on network ("tcp", "tcp4", "tcp6", "unix" or
// "unixpacket") and addr: the very socket the previous generation passed on
// if it had one for that network and address (asked-for or actual),
// otherwise a new one made with Options.ListenConfig. Either way it is
// passed on to the next generation.
//
// Unix listeners never unlink their socket file on Close: the file belongs
// to every generation. It is removed by the final Stop.
func (u *Upgrader) Listen(network, addr string) (net.Listener, error) {
	return listen(u, kindListener, network, addr, listenerFromFd, func() (net.Listener, string, error) {
		l, err := u.opts.ListenConfig.Listen(context.Background(), network, addr)
		if err != nil {
			return nil, "", err
		}
		if ul, ok := l.(*net.UnixListener); ok {
			ul.SetUnlinkOnClose(false)
		}
		return l, l.Addr().String(), nil
	})
}

// ListenPacket is Listen for "udp", "udp4", "udp6" and "unixgram".
func (u *Upgrader) ListenPacket(network, addr string) (net.PacketConn, error) {
	return listen(u, kindPacket, network, addr, packetConnFromFd, func() (net.PacketConn, string, error) {
		c, err := u.opts.ListenConfig.ListenPacket(context.Background(), network, addr)
		if err != nil {
			return nil, "", err
		}
		return c, c.LocalAddr().String(), nil
	})
}

// listen is Listen and ListenPacket: claim the inherited socket of kind k
// for network and addr, or create one and register a copy of it.
func listen[T io.Closer](u *Upgrader, k fdKind, network, addr string,
	inherited func(fd int, name string) (T, error),
	create func() (T, string, error),
) (T, error) {
	var zero T
	if !validNetwork(k, network) {
		return zero, &net.OpError{Op: "listen", Net: network, Err: net.UnknownNetworkError(network)}
	}
	r := u.reg
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return zero, ErrStopped
	}
	if e := r.claimAddr(k, network, addr); e != nil {
		if e.activated {
			// From now on it is passed on as asked for, like any other:
			// by address, not by systemd's name for it.
			if e.meta.Name != "" {
				delete(r.byName, e.meta.Name)
			}
			e.meta.Name, e.meta.Network, e.meta.Address = "", network, addr
		}
		v, err := inherited(e.fd, network+":"+addr)
		if err != nil {
			return zero, fmt.Errorf("baton: inherited %s %s on %s: %w", network, k, addr, err)
		}
		if sc, ok := any(v).(syscall.Conn); ok {
			e.adopt(sc)
		}
		return v, nil
	}
	v, actual, err := create()
	if err != nil {
		return zero, err
	}
	// No copy: the registry passes on v's own descriptor (see entry).
	rc, err := any(v).(syscall.Conn).SyscallConn()
	if err != nil {
		v.Close()
		return zero, err
	}
	r.entries = append(r.entries, &entry{
		meta:  fdMeta{Kind: k, Network: network, Address: addr, Actual: actual},
		fd:    -1,
		conns: []syscall.RawConn{rc},
	})
	return v, nil
}

// Add registers any socket, connection or file under name, so that the
// next generation can take it with File, Conn, Listener or PacketConn.
//
// A listener or packet socket is passed on as c holds it: the Upgrader
// keeps no copy, so that a socket costs one descriptor, not two. Closing c
// closes the socket and takes it out of later upgrades (the name may then
// be added again); close it only once this generation is done with it,
// after Exit. A connection or file is copied: c stays the caller's to
// close at any time. Either way a *net.UnixListener no longer removes its
// socket file on Close (the file belongs to every generation, as with
// Listen).
func (u *Upgrader) Add(name string, c syscall.Conn) error {
	if !validName(name) {
		return fmt.Errorf("baton: bad descriptor name %q", name)
	}
	meta := fdMeta{Name: name, Kind: kindFile}
	switch v := c.(type) {
	case *os.File:
	case net.Listener:
		meta.Kind, meta.Network, meta.Actual = kindListener, v.Addr().Network(), v.Addr().String()
		if ul, ok := v.(*net.UnixListener); ok {
			// The socket file belongs to every generation; see Listen.
			ul.SetUnlinkOnClose(false)
		}
	case net.PacketConn:
		// *net.UnixConn has ReadFrom and WriteTo whatever its socket
		// type: a stream unix connection is a conn, not a packet socket.
		meta.Kind, meta.Network, meta.Actual = kindPacket, v.LocalAddr().Network(), v.LocalAddr().String()
		if !validNetwork(kindPacket, meta.Network) {
			meta.Kind = kindConn
		}
	case net.Conn:
		meta.Kind, meta.Network, meta.Actual = kindConn, v.LocalAddr().Network(), v.LocalAddr().String()
	default:
		return fmt.Errorf("baton: Add %q: unsupported type %T", name, c)
	}
	if meta.Kind != kindFile && !validNetwork(meta.Kind, meta.Network) {
		return fmt.Errorf("baton: Add %q: %s on network %q cannot be passed on", name, meta.Kind, meta.Network)
	}
	e := &entry{meta: meta, fd: -1}
	if meta.Kind == kindListener || meta.Kind == kindPacket {
		rc, err := c.SyscallConn()
		if err != nil {
			return fmt.Errorf("baton: Add %q: %w", name, err)
		}
		e.conns = []syscall.RawConn{rc}
	} else {
		fd, err := dupConn(c)
		if err != nil {
			return fmt.Errorf("baton: Add %q: %w", name, err)
		}
		e.fd = fd
	}
	return u.reg.add(e)
}

// ErrNoSuchName is returned by File, Conn, Listener and PacketConn for a
// name that neither the predecessor passed on nor Add registered.
var ErrNoSuchName = errors.New("baton: no descriptor with that name")

// lookup claims the descriptor registered as name if it is of kind want
// (any kind if want is ""). A lookup of the wrong kind claims nothing, so
// Ready still closes what nobody really took.
func (u *Upgrader) lookup(name string, want fdKind) (*entry, error) {
	e := u.reg.byName[name]
	if e == nil {
		return nil, fmt.Errorf("%w: %q", ErrNoSuchName, name)
	}
	if want != "" && e.meta.Kind != want {
		return nil, fmt.Errorf("baton: %q is a %s, not a %s", name, e.meta.Kind, want)
	}
	e.claimed = true
	return e, nil
}

// claimed claims the descriptor registered as name, of kind want (any kind
// if ""), and builds the value the caller asked for from a copy of it. A
// listener or packet socket built so holds e's socket from then on (see
// adopt); a file or a connection is the caller's alone.
func claimed[T any](u *Upgrader, name string, want fdKind, build func(fd int, name string) (T, error)) (T, error) {
	u.reg.mu.Lock()
	defer u.reg.mu.Unlock()
	var v T
	e, err := u.lookup(name, want)
	if err != nil {
		return v, err
	}
	if !e.control(func(fd int) { v, err = build(fd, name) }) {
		return v, fmt.Errorf("baton: %s: %w", e.describe(), errClosedByApp)
	}
	if sc, ok := any(v).(syscall.Conn); ok && err == nil && (want == kindListener || want == kindPacket) {
		e.adopt(sc)
	}
	return v, err
}

// File returns a new *os.File for the descriptor registered as name, of any
// kind. The caller owns and closes it.
func (u *Upgrader) File(name string) (*os.File, error) {
	return claimed(u, name, "", fileFromFd)
}

// Listener returns a new net.Listener for the listener registered as name.
func (u *Upgrader) Listener(name string) (net.Listener, error) {
	return claimed(u, name, kindListener, listenerFromFd)
}

// PacketConn returns a new net.PacketConn for the socket registered as name.
func (u *Upgrader) PacketConn(name string) (net.PacketConn, error) {
	return claimed(u, name, kindPacket, packetConnFromFd)
}

// Conn returns a new net.Conn for the connection registered as name.
func (u *Upgrader) Conn(name string) (net.Conn, error) {
	return claimed(u, name, kindConn, func(fd int, name string) (net.Conn, error) {
		return fromFd(fd, name, net.FileConn)
	})
}

// fromFd builds a net value from a copy of fd; the net package makes its own
// copy in turn, so the intermediate *os.File is closed at once.
func fromFd[T any](fd int, name string, conv func(*os.File) (T, error)) (T, error) {
	f, err := fileFromFd(fd, name)
	if err != nil {
		var zero T
		return zero, err
	}
	defer f.Close()
	return conv(f)
}

func listenerFromFd(fd int, name string) (net.Listener, error) {
	l, err := fromFd(fd, name, net.FileListener)
	if ul, ok := l.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	return l, err
}

func packetConnFromFd(fd int, name string) (net.PacketConn, error) {
	return fromFd(fd, name, net.FilePacketConn)
}
