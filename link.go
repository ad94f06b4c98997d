package baton

import (
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

// SyscallConn reaches the handed socket itself, so that a connection
// handed to this generation can be handed over again, to the next one.
func (c *HandedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("baton: a handed connection without a socket")
	}
	return sc.SyscallConn()
}
