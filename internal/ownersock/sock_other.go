//go:build !linux

package ownersock

import (
	"context"
	"net"
	"os"
	"syscall"
	"time"
)

// Without SO_PEERCRED a peer cannot be checked: no owner-only socket.

func PeerCredFD(fd int) (Cred, error) { return Cred{}, ErrNotSupported }

func PeerCred(c syscall.Conn) (Cred, error) { return Cred{}, ErrNotSupported }

func CheckPeer(c syscall.Conn) (Cred, error) { return Cred{}, ErrNotSupported }

// A Listener is an owner-only Unix socket; here none can be made.
type Listener struct{}

func Listen(path string) (*Listener, error) { return nil, ErrNotSupported }

func Adopt(f *os.File, path string, inode uint64) (*Listener, error) { return nil, ErrNotSupported }

func (l *Listener) Commit() error { return ErrNotSupported }

func (l *Listener) Accept() (*net.UnixConn, Cred, error) { return nil, Cred{}, ErrNotSupported }

func (l *Listener) Close(unlink bool) {}

func (l *Listener) Replaced() bool { return true }

func (l *Listener) Path() string { return "" }

func (l *Listener) Addr() net.Addr { return nil }

func (l *Listener) Inode() uint64 { return 0 }

func (l *Listener) SyscallConn() (syscall.RawConn, error) { return nil, ErrNotSupported }

func Dial(path string, timeout time.Duration) (*net.UnixConn, Cred, error) {
	return nil, Cred{}, ErrNotSupported
}

func DialContext(ctx context.Context, path string) (*net.UnixConn, Cred, error) {
	return nil, Cred{}, ErrNotSupported
}
