package supervisor

import (
	"encoding/binary"
	"errors"
	"testing"

	"golang.org/x/sys/unix"
)

// diagAnswer is a sock_diag answer as the kernel writes it: an nlmsghdr
// of type typ and body.
func diagAnswer(typ uint16, body []byte) []byte {
	b := make([]byte, 16, 16+len(body))
	binary.NativeEndian.PutUint32(b[0:], uint32(16+len(body)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	return append(b, body...)
}

// inetDiagMsg is an inet_diag_msg for a socket with inode.
func inetDiagMsg(inode uint32) []byte {
	b := make([]byte, 72)
	b[0], b[1] = unix.AF_INET, 1 // family, state (ESTABLISHED)
	binary.NativeEndian.PutUint32(b[68:], inode)
	return b
}

// nlmsgErr is the body of an NLMSG_ERROR answer: -errno and the request's
// header.
func nlmsgErr(errno int32) []byte {
	b := make([]byte, 20)
	binary.NativeEndian.PutUint32(b, uint32(-errno))
	return b
}

// FuzzDiagInode decodes what the kernel answers a sock_diag request. An
// inode comes only from a whole inet_diag_msg, and it is the one there; a
// netlink error carries its errno.
func FuzzDiagInode(f *testing.F) {
	f.Add(diagAnswer(unix.SOCK_DIAG_BY_FAMILY, inetDiagMsg(123456)))
	f.Add(diagAnswer(unix.SOCK_DIAG_BY_FAMILY, inetDiagMsg(0)))
	f.Add(diagAnswer(unix.SOCK_DIAG_BY_FAMILY, inetDiagMsg(1)[:71]))
	f.Add(diagAnswer(unix.NLMSG_ERROR, nlmsgErr(int32(unix.ENOENT))))
	f.Add(diagAnswer(unix.NLMSG_ERROR, nlmsgErr(0)))
	f.Add(diagAnswer(unix.NLMSG_ERROR, nlmsgErr(-1<<31)))
	f.Add(diagAnswer(unix.NLMSG_DONE, nil))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		inode, err := diagInode(b)
		if err != nil {
			if inode != 0 {
				t.Fatalf("diagInode(%x) = %d with error %v", b, inode, err)
			}
			if len(b) >= 20 && binary.NativeEndian.Uint16(b[4:]) == unix.NLMSG_ERROR {
				if e := int32(binary.NativeEndian.Uint32(b[16:])); e != 0 && !errors.Is(err, unix.Errno(-e)) {
					t.Fatalf("diagInode(%x): error %v does not carry errno %d", b, err, -e)
				}
			}
			return
		}
		if len(b) < 16+72 || binary.NativeEndian.Uint16(b[4:]) != unix.SOCK_DIAG_BY_FAMILY {
			t.Fatalf("diagInode(%x) accepted %d bytes", b, len(b))
		}
		if want := binary.NativeEndian.Uint32(b[16+68:]); inode != want {
			t.Fatalf("diagInode(%x) = %d, want the inode field %d", b, inode, want)
		}
		// The same socket, answered cleanly, gives the same inode.
		if again, err := diagInode(diagAnswer(unix.SOCK_DIAG_BY_FAMILY, inetDiagMsg(inode))); err != nil || again != inode {
			t.Fatalf("diagInode of a clean answer for inode %d = %d, %v", inode, again, err)
		}
	})
}
