//go:build linux || darwin

package baton

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// HandOver passes c, an established connection of this generation, to
// the successor under name, with state (at most MaxConnState bytes). It
// returns nil once the successor has acknowledged it: the connection is
// the successor's, HandOver has closed c (if it is an io.Closer, as every
// net.Conn is; otherwise close it yourself), and c must not be used
// again; the socket lives on in the successor. On any error the
// connection is still the caller's alone: serve it, or close it
// gracefully. It may be called once Exit was closed by a successful
// handover, until this process exits; otherwise it returns ErrNoSuccessor.
//
// ctx bounds the wait for one of the connections that may be in flight
// at once (64) and the sending. Once the connection is on the wire,
// HandOver waits for the successor's answer, or for its end, whatever
// ctx says: returning earlier could leave the connection to both
// processes, or to neither. The successor answers at once; a successor
// that neither answers nor exits (stopped with SIGSTOP) holds HandOver
// until it does, or until this process exits, and the connection is then
// the successor's to take or close.
//
// c must not be read or written while HandOver runs. Data the application
// has read from c but not consumed is not passed on: hand over only at a
// boundary of the application's protocol.
func (u *Upgrader) HandOver(ctx context.Context, name string, c syscall.Conn, state []byte) error {
	if !validName(name) {
		return fmt.Errorf("baton: HandOver: bad name %q", name)
	}
	if len(state) > MaxConnState {
		return fmt.Errorf("baton: HandOver: state of %d bytes exceeds MaxConnState (%d)", len(state), MaxConnState)
	}
	u.mu.Lock()
	s := u.successor
	u.mu.Unlock()
	if s == nil || s.link == nil {
		return ErrNoSuccessor
	}
	if err := s.link.handOver(ctx, name, c, state); err != nil {
		return err
	}
	if cl, ok := c.(io.Closer); ok {
		// Our descriptor only: the successor holds the socket now, so
		// this close neither ends the connection nor shuts it down.
		cl.Close()
	}
	return nil
}

// Handed returns a listener whose Accept yields, as *HandedConn, the
// connections the predecessor hands over under name. Call it before
// Ready: a connection handed under a name nobody asked for is refused, and
// the predecessor keeps it. Closing the listener closes the connections
// it acknowledged that nobody accepted yet (they are this process's) and
// refuses any further ones. A first generation gets a listener that yields
// nothing until closed; so does any once its predecessor is gone.
func (u *Upgrader) Handed(name string) (net.Listener, error) {
	if !validName(name) {
		return nil, fmt.Errorf("baton: Handed: bad name %q", name)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.isReady() {
		// The predecessor hands connections over only after our Ready:
		// asking later would race with the first of them.
		return nil, fmt.Errorf("baton: Handed(%q) called after Ready", name)
	}
	return u.handed.listen(name)
}

// SetState sets the state blob named name that every successor of this
// generation receives in the handoff (PredecessorState); a nil b removes
// it. All blobs together may hold at most MaxState bytes, in at most 1024
// names. Names starting with "baton." are reserved for the library's own
// (TLS session ticket keys). A successor gets the blobs as they were when
// the upgrade began; each generation sets its own for the next.
func (u *Upgrader) SetState(name string, b []byte) error {
	if strings.HasPrefix(name, reservedStatePrefix) {
		return fmt.Errorf("baton: SetState: name %q: the prefix %q is reserved", name, reservedStatePrefix)
	}
	return u.setState(name, b)
}

// reservedStatePrefix marks the state blobs of the library itself.
const reservedStatePrefix = "baton."

// setState is SetState without the reservation: for the library's own
// blobs.
func (u *Upgrader) setState(name string, b []byte) error {
	if !validName(name) {
		return fmt.Errorf("baton: SetState: bad name %q", name)
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	next := maps.Clone(u.state)
	if next == nil {
		next = make(map[string][]byte)
	}
	if b == nil {
		delete(next, name)
	} else {
		// A copy: the caller may reuse b.
		next[name] = append([]byte{}, b...)
	}
	if err := checkState(next); err != nil {
		return fmt.Errorf("baton: SetState(%q, %d bytes): %w", name, len(b), err)
	}
	u.state = next
	return nil
}

// stateSnapshot returns the blobs to hand a successor. The map is never
// changed after it is set (setState replaces it), so sharing it is safe.
func (u *Upgrader) stateSnapshot() map[string][]byte {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.state
}

// PredecessorState returns a copy of the state blob named name that the
// predecessor set, and whether it set one.
func (u *Upgrader) PredecessorState(name string) ([]byte, bool) {
	if u.parent == nil {
		return nil, false
	}
	b, ok := u.parent.state[name]
	if !ok {
		return nil, false
	}
	return append([]byte{}, b...), true
}

// handedQueue bounds the connections acknowledged and not yet accepted on
// one Handed listener: beyond it the successor refuses, and the
// predecessor keeps them, rather than hoarding what it does not serve.
const handedQueue = 64

// handedSet is a successor's Handed listeners, by name.
type handedSet struct {
	log    *slog.Logger // says why a connection was refused
	mu     sync.Mutex
	byName map[string]*handedListener
}

// newHandedSet returns an empty set that logs to log (nil: nowhere).
func newHandedSet(log *slog.Logger) *handedSet {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handedSet{log: log, byName: make(map[string]*handedListener)}
}

func (s *handedSet) listen(name string) (*handedListener, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byName[name]; ok {
		return nil, fmt.Errorf("baton: Handed(%q) called twice", name)
	}
	l := &handedListener{name: name, queue: make(chan *HandedConn, handedQueue), closed: make(chan struct{})}
	s.byName[name] = l
	return l, nil
}

// deliver queues the connection of m, received as fd, on its listener.
// It returns "" if it did (the connection is ours now), or why not, in
// which case fd is closed: the predecessor keeps the connection.
func (s *handedSet) deliver(m connMsg, fd int) string {
	s.mu.Lock()
	l := s.byName[m.Name]
	s.mu.Unlock()
	if l == nil {
		unix.Close(fd)
		return fmt.Sprintf("nobody asked for connections named %q", m.Name)
	}
	return l.deliver(m, fd)
}

// handedListener yields the connections handed over under one name.
type handedListener struct {
	name  string
	queue chan *HandedConn

	mu         sync.Mutex // guards sends on queue against Close
	closed     chan struct{}
	closedOnce bool
}

func (l *handedListener) deliver(m connMsg, fd int) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.closedOnce:
		unix.Close(fd)
		return fmt.Sprintf("the listener for %q is closed", l.name)
	case len(l.queue) == cap(l.queue):
		unix.Close(fd)
		return fmt.Sprintf("%d connections named %q wait to be accepted", cap(l.queue), l.name)
	}
	c, err := fdConn(fd, l.name)
	if err != nil {
		return err.Error()
	}
	l.queue <- &HandedConn{Conn: c, State: m.State} // room checked above, under mu
	return ""
}

// fdConn makes a net.Conn of fd, a connected socket received close-on-exec,
// and closes fd.
//
// The socket stays non-blocking as it came (a Go predecessor made it so):
// os.NewFile sees that and its Fd, which net.FileConn calls, leaves the
// shared open file description alone.
func fdConn(fd int, name string) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "handed-"+name)
	defer f.Close() // FileConn works on its own duplicate
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("not a connection: %v", err)
	}
	return c, nil
}

// Accept waits for the next handed connection, a *HandedConn.
func (l *handedListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.queue:
		return c, nil
	case <-l.closed:
		return nil, &net.OpError{Op: "accept", Net: handedNetwork, Addr: l.Addr(), Err: net.ErrClosed}
	}
}

// Close refuses further connections and closes those acknowledged but
// not accepted: they are this process's, and nobody will serve them.
func (l *handedListener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closedOnce {
		return nil
	}
	l.closedOnce = true
	close(l.closed)
	for {
		select {
		case c := <-l.queue:
			c.Close()
		default:
			return nil
		}
	}
}

// Addr names the listener: network "baton-handed", address the name.
func (l *handedListener) Addr() net.Addr { return handedAddr(l.name) }

const handedNetwork = "baton-handed"

type handedAddr string

func (a handedAddr) Network() string { return handedNetwork }
func (a handedAddr) String() string  { return string(a) }
