//go:build linux

package baton

import (
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzParseRights decodes the ancillary data that came with a handoff
// frame, as recvFrame does. Whatever the bytes, it never returns more
// descriptors than the SCM_RIGHTS messages in them carry, and it gives back
// exactly the descriptors unix.UnixRights packed.
func FuzzParseRights(f *testing.F) {
	f.Add(unix.UnixRights(3))
	f.Add(unix.UnixRights(3, 4, 5))
	f.Add(append(unix.UnixRights(7), unix.UnixRights(8, 9)...))
	f.Add(append(unix.UnixCredentials(&unix.Ucred{Pid: 1, Uid: 2, Gid: 3}), unix.UnixRights(10)...))
	f.Add(unix.UnixRights(3)[:unix.CmsgLen(0)-1])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, oob []byte) {
		fds, err := parseRights(oob)
		if len(fds)*4 > len(oob) {
			t.Fatalf("parseRights(%x) = %d descriptors from %d bytes", oob, len(fds), len(oob))
		}
		carried := 0
		msgs, perr := unix.ParseSocketControlMessage(oob)
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_RIGHTS {
				carried += len(m.Data) / 4
			}
		}
		if len(fds) > carried {
			t.Fatalf("parseRights(%x) = %d descriptors; the SCM_RIGHTS messages carry %d", oob, len(fds), carried)
		}
		if perr != nil {
			if err == nil {
				t.Fatalf("parseRights(%x) accepted what unix.ParseSocketControlMessage refuses: %v", oob, perr)
			}
			return
		}
		if err != nil {
			return
		}
		if len(fds) != carried {
			t.Fatalf("parseRights(%x) = %d descriptors, no error; the SCM_RIGHTS messages carry %d", oob, len(fds), carried)
		}
		if len(fds) == 0 {
			return
		}
		back, err := parseRights(unix.UnixRights(fds...))
		if err != nil || !slices.Equal(back, fds) {
			t.Fatalf("parseRights(UnixRights(%v)) = %v, %v; want them back", fds, back, err)
		}
	})
}
