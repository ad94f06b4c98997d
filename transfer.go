//go:build linux || darwin

package baton

import (
	"context"
	"errors"
	"net"
	"syscall"
)

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
