//go:build linux || darwin

package baton

import (
	"context"
	"errors"
	"net"
	"syscall"
)

// The generation link: after the successor is ready, the handoff socket
// stays open while this generation drains, and over it this generation
// passes established connections — each with an opaque state blob — to
// the successor. At every instant exactly one generation owns a
// connection: a handed connection is the successor's only once it has
// acknowledged it; until then, and whenever the transfer fails (the
// successor refuses or dies, the link breaks, descriptors run out), it is
// still ours.
//
// Beside the connections, each generation carries named state blobs to
// its successor in the handoff itself (SetState, PredecessorState): TLS
// session ticket keys, caches, counters.

// Limits of what the link carries, so that a corrupt or hostile frame
// cannot make either side allocate or wait without bound.
const (
	// MaxConnState bounds the state blob of one handed connection.
	MaxConnState = 64 << 10
	// MaxState bounds all of a generation's named state blobs together.
	MaxState = 512 << 10
)

var (
	// ErrNoSuccessor is returned by HandOver when no successor took over
	// from this generation, or its link is gone: the connection is still
	// the caller's.
	ErrNoSuccessor = errors.New("baton: no successor to hand the connection to")

	// ErrHandOverRefused is wrapped by the error of a HandOver that the
	// successor refused (nobody asked for that name, its queue is full):
	// the connection is still the caller's.
	ErrHandOverRefused = errors.New("baton: the successor refused the connection")
)

// HandedConn is a connection the predecessor handed over: Handed's
// listener yields them.
type HandedConn struct {
	net.Conn
	// State is the blob the predecessor passed with it.
	State []byte
}

// HandOver passes c, an established connection of this generation, to
// the successor under name, with state (at most MaxConnState bytes). It
// returns nil once the successor has acknowledged it: this process's
// descriptor is then closed, and c must not be used again (close the
// value; the socket lives on in the successor). On any error the
// connection is still the caller's alone: serve it, or close it
// gracefully. It may be called once Exit was closed by a successful
// handover, until this process exits; otherwise it returns ErrNoSuccessor.
// ctx bounds the wait for the acknowledgement.
func (u *Upgrader) HandOver(ctx context.Context, name string, c syscall.Conn, state []byte) error {
	return ErrNoSuccessor
}

// Handed returns a listener whose Accept yields, as *HandedConn, the
// connections the predecessor hands over under name. Call it before
// Ready: a connection handed under a name nobody asked for is refused, and
// the predecessor keeps it. Closing the listener refuses any further ones.
// A first generation gets a listener that yields nothing until closed.
func (u *Upgrader) Handed(name string) (net.Listener, error) {
	return nil, errors.New("baton: Handed: not implemented yet")
}

// SetState sets the state blob named name that every successor of this
// generation receives in the handoff (PredecessorState). All blobs
// together may hold at most MaxState bytes. Names starting with "baton."
// are reserved for the library's own (TLS session ticket keys).
func (u *Upgrader) SetState(name string, b []byte) error {
	return errors.New("baton: SetState: not implemented yet")
}

// PredecessorState returns the state blob named name that the
// predecessor set, and whether it set one.
func (u *Upgrader) PredecessorState(name string) ([]byte, bool) {
	return nil, false
}
