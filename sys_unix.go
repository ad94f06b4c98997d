//go:build linux || darwin

package baton

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// dupFd returns a close-on-exec duplicate of fd.
func dupFd(fd int) (int, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return -1, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", err)
	}
	return nfd, nil
}

// dupConn duplicates the descriptor behind c.
//
// It goes through SyscallConn, never (*os.File).Fd or (*net.TCPListener).File:
// those may switch the shared open file description to blocking mode, and
// then every process holding the socket — including the other generation —
// blocks in accept(2).
func dupConn(c syscall.Conn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var dupErr error
	if err := rc.Control(func(fd uintptr) { nfd, dupErr = dupFd(int(fd)) }); err != nil {
		return -1, err
	}
	return nfd, dupErr
}

// fileFromFd wraps a duplicate of fd in an *os.File the caller owns.
//
// A socket that is already non-blocking stays so: os.NewFile only remembers
// to restore blocking mode in Fd for descriptors it switched itself, so the
// net.File* calls that use Fd on the result leave the shared description
// alone.
func fileFromFd(fd int, name string) (*os.File, error) {
	nfd, err := dupFd(fd)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(nfd), name), nil
}

// socketpair returns our end of a Unix stream socketpair as a
// *net.UnixConn and the successor's end as an *os.File to place in its
// descriptor table.
func socketpair() (*net.UnixConn, *os.File, error) {
	return socketpairOf(unix.SOCK_STREAM)
}

// socketpairOf is socketpair for a socket type of the caller's choice.
func socketpairOf(typ int) (*net.UnixConn, *os.File, error) {
	// ForkLock: no fork may see these descriptors before they are
	// close-on-exec (darwin has no SOCK_CLOEXEC).
	syscall.ForkLock.RLock()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ, 0)
	if err == nil {
		unix.CloseOnExec(fds[0])
		unix.CloseOnExec(fds[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, nil, os.NewSyscallError("socketpair", err)
	}
	local := os.NewFile(uintptr(fds[0]), "baton-handoff")
	defer local.Close()
	c, err := net.FileConn(local)
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return c.(*net.UnixConn), os.NewFile(uintptr(fds[1]), "baton-handoff-successor"), nil
}

// handoffConn adopts the inherited end of the socketpair.
func handoffConn(fd int) (*net.UnixConn, error) {
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil {
		return nil, fmt.Errorf("baton: inherited handoff descriptor %d: %w", fd, os.NewSyscallError("getsockopt", err))
	}
	if typ != unix.SOCK_STREAM {
		return nil, fmt.Errorf("baton: inherited handoff descriptor %d is not a stream socket", fd)
	}
	f := os.NewFile(uintptr(fd), "baton-handoff")
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("baton: inherited handoff descriptor %d: %w", fd, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("baton: inherited handoff descriptor %d is not a unix socket", fd)
	}
	return uc, nil
}

// sendFrame writes one frame; fds, if any, ride on its first byte.
func sendFrame(c *net.UnixConn, frame []byte, fds []int) error {
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	n, _, err := c.WriteMsgUnix(frame, oob, nil)
	if err != nil {
		return err
	}
	if n == len(frame) {
		// No second write, not even of nothing: a write of zero bytes
		// to a peer that has read the frame and closed fails with EPIPE,
		// and would turn a frame that arrived into an error.
		return nil
	}
	// A stream socket may take part of a large frame; the rest follows
	// without ancillary data.
	_, err = c.Write(frame[n:])
	return err
}

// recvFrame reads one frame and the descriptors attached to it. The
// descriptors are close-on-exec (net asks for MSG_CMSG_CLOEXEC, or sets it
// right after on systems without it). On error, any received descriptor is
// closed; descriptors the kernel truncated (MSG_CTRUNC) are an error.
func recvFrame(c *net.UnixConn) (typ byte, body []byte, fds []int, err error) {
	typ, body, fds, truncated, err := recvFrameTrunc(c)
	if err == nil && truncated {
		closeFds(fds)
		return 0, nil, nil, errTruncated(len(fds))
	}
	return typ, body, fds, err
}

// errTruncated reports descriptors the kernel dropped (MSG_CTRUNC).
func errTruncated(got int) error {
	return protoErrorf("descriptors truncated (MSG_CTRUNC), only %d received: %s", got, ctruncCause())
}

// recvFrameTrunc is recvFrame that reads the whole frame even when the
// kernel dropped some of its descriptors (MSG_CTRUNC), and says so in
// truncated: the generation link refuses such a connection and reads on,
// so the stream must stay framed.
func recvFrameTrunc(c *net.UnixConn) (typ byte, body []byte, fds []int, truncated bool, err error) {
	defer func() {
		if err != nil {
			closeFds(fds)
			fds = nil
		}
	}()
	var h [frameHeaderLen]byte
	oob := make([]byte, unix.CmsgSpace(maxFdsPerFrame*4))
	for got := 0; got < len(h); {
		n, oobn, flags, _, err := c.ReadMsgUnix(h[got:], oob)
		if oobn > 0 {
			more, perr := parseRights(oob[:oobn])
			fds = append(fds, more...)
			if perr != nil {
				return 0, nil, fds, false, perr
			}
		}
		if flags&unix.MSG_CTRUNC != 0 {
			truncated = true
		}
		if err != nil {
			if got > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return 0, nil, fds, false, err
		}
		if n == 0 {
			return 0, nil, fds, false, io.EOF
		}
		got += n
	}
	typ, size, err := parseHeader(h[:])
	if err != nil {
		return 0, nil, fds, false, err
	}
	body = make([]byte, size)
	if _, err := io.ReadFull(c, body); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, fds, false, err
	}
	return typ, body, fds, truncated, nil
}

// ctruncCause says why the kernel may have truncated descriptors. Our own
// frames carry at most maxFdsPerFrame, for which recvFrame has room, so
// the likely cause is the limit on open descriptors: the kernel installs
// what fits and silently drops the rest. Naming the limit and its value
// tells the operator what to raise.
func ctruncCause() string {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Sprintf("the descriptor limit (RLIMIT_NOFILE) was reached, or a frame carried more than %d", maxFdsPerFrame)
	}
	return fmt.Sprintf("the descriptor limit was reached (RLIMIT_NOFILE %d: too many open files), or a frame carried more than %d", lim.Cur, maxFdsPerFrame)
}

func parseRights(oob []byte) ([]int, error) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil, protoErrorf("control message: %v", err)
	}
	var fds []int
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_SOCKET || m.Header.Type != unix.SCM_RIGHTS {
			continue
		}
		// unix.ParseUnixRights indexes past its result on a partial
		// descriptor (it panics). The kernel sends whole ones; take
		// those, so the caller closes them, and refuse the message.
		n := len(m.Data)
		m.Data = m.Data[:n/4*4]
		more, err := unix.ParseUnixRights(&m)
		if err != nil {
			return fds, protoErrorf("rights: %v", err)
		}
		fds = append(fds, more...)
		if n%4 != 0 {
			return fds, protoErrorf("rights: %d bytes, not whole descriptors", n)
		}
	}
	return fds, nil
}

func closeFds(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// checkConnSocket refuses a descriptor that is not a connection's
// socket: a listener or a file handed over would be taken by the
// successor for a connection it cannot serve.
func checkConnSocket(rc syscall.RawConn) error {
	var err error
	cerr := rc.Control(func(fd uintptr) {
		var listening int
		listening, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ACCEPTCONN)
		if err == nil && listening != 0 {
			err = errors.New("a listening socket, not a connection")
		}
	})
	if cerr != nil {
		return cerr
	}
	return err
}

// validFd reports whether fd is open; used to pass a closed stdin/stdout/
// stderr on as closed rather than failing the start.
func validFd(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err == nil
}
