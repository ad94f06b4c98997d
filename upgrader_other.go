//go:build !linux && !darwin

package baton

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
)

// Upgrader is not supported on this system: New returns ErrNotSupported.
type Upgrader struct{}

// New returns ErrNotSupported on this system.
func New(opts Options) (*Upgrader, error) { return nil, ErrNotSupported }

// ErrNoSuchName is returned by File, Conn, Listener and PacketConn for a
// name that neither the predecessor passed on nor Add registered.
var ErrNoSuchName = errors.New("baton: no descriptor with that name")

func (u *Upgrader) Generation() int                                   { return 1 }
func (u *Upgrader) HasParent() bool                                   { return false }
func (u *Upgrader) Exit() <-chan struct{}                             { return nil }
func (u *Upgrader) HandedOver() bool                                  { return false }
func (u *Upgrader) WaitForParent(ctx context.Context) error           { return nil }
func (u *Upgrader) Ready() error                                      { return ErrNotSupported }
func (u *Upgrader) Upgrade() error                                    { return ErrNotSupported }
func (u *Upgrader) Stop()                                             {}
func (u *Upgrader) Listen(network, addr string) (net.Listener, error) { return nil, ErrNotSupported }
func (u *Upgrader) ListenPacket(network, addr string) (net.PacketConn, error) {
	return nil, ErrNotSupported
}
func (u *Upgrader) Add(name string, c syscall.Conn) error          { return ErrNotSupported }
func (u *Upgrader) File(name string) (*os.File, error)             { return nil, ErrNotSupported }
func (u *Upgrader) Listener(name string) (net.Listener, error)     { return nil, ErrNotSupported }
func (u *Upgrader) PacketConn(name string) (net.PacketConn, error) { return nil, ErrNotSupported }
func (u *Upgrader) Conn(name string) (net.Conn, error)             { return nil, ErrNotSupported }

// HandleSignals does nothing on this system.
func (u *Upgrader) HandleSignals() {}

// ExecRequested is false on this system.
func (u *Upgrader) ExecRequested() bool { return false }

// Exec returns ErrNotSupported on this system.
func (u *Upgrader) Exec() error { return ErrNotSupported }

// HandOver returns ErrNotSupported on this system.
func (u *Upgrader) HandOver(ctx context.Context, name string, c syscall.Conn, state []byte) error {
	return ErrNotSupported
}

// Handed returns ErrNotSupported on this system.
func (u *Upgrader) Handed(name string) (net.Listener, error) { return nil, ErrNotSupported }

// SetState returns ErrNotSupported on this system.
func (u *Upgrader) SetState(name string, b []byte) error { return ErrNotSupported }

// PredecessorState finds nothing on this system.
func (u *Upgrader) PredecessorState(name string) ([]byte, bool) { return nil, false }

// Status is empty on this system.
func (u *Upgrader) Status() Status { return Status{} }

// RelayPacket returns ErrNotSupported on this system.
func (u *Upgrader) RelayPacket(channel string, gen int, from netip.AddrPort, b []byte) error {
	return ErrNotSupported
}

// RelayedPackets returns ErrNotSupported on this system.
func (u *Upgrader) RelayedPackets(channel string) (<-chan RelayedPacket, error) {
	return nil, ErrNotSupported
}

// RelayStats is empty on this system.
func (u *Upgrader) RelayStats() RelayStats { return RelayStats{} }
