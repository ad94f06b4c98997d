package supervisor

import (
	"bytes"
	"encoding/binary"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzParseNotification decodes a datagram from a worker on the master's
// private notify socket. The sender is the pid of the last credentials in
// it, or -1; READY=1 counts only as a whole line; and it never returns
// more descriptors than its SCM_RIGHTS messages carry.
func FuzzParseNotification(f *testing.F) {
	cred := unix.UnixCredentials(&unix.Ucred{Pid: 4242, Uid: 1000, Gid: 1000})
	f.Add([]byte("READY=1"), cred)
	f.Add([]byte("STATUS=starting\nREADY=1\n"), append(cred, unix.UnixRights(5)...))
	f.Add([]byte("READY=10"), cred)
	f.Add([]byte("BARRIER=1"), append(unix.UnixRights(7, 8), cred...))
	f.Add([]byte("READY=1"), []byte(nil))
	f.Add([]byte("FDSTORE=1\nFDNAME=web"), unix.UnixRights(3, 4, 5))
	f.Add([]byte(" READY=1"), cred[:len(cred)-1])
	f.Fuzz(func(t *testing.T, data, oob []byte) {
		sender, ready, fds := parseNotification(data, oob)
		want := slices.ContainsFunc(bytes.Split(data, []byte("\n")), func(l []byte) bool { return string(l) == "READY=1" })
		if ready != want {
			t.Fatalf("parseNotification(%q) ready = %v, want %v", data, ready, want)
		}
		msgs, err := unix.ParseSocketControlMessage(oob)
		if err != nil {
			if sender != -1 || len(fds) > 0 {
				t.Fatalf("parseNotification(_, %x) = sender %d, %d descriptors from control data that does not parse (%v)", oob, sender, len(fds), err)
			}
			return
		}
		wantSender, carried := int32(-1), 0
		for _, m := range msgs {
			switch {
			case m.Header.Level != unix.SOL_SOCKET:
			case m.Header.Type == unix.SCM_RIGHTS:
				carried += len(m.Data) / 4
			case m.Header.Type == unix.SCM_CREDENTIALS && len(m.Data) >= unix.SizeofUcred:
				wantSender = int32(binary.NativeEndian.Uint32(m.Data))
			}
		}
		if len(fds) > carried {
			t.Fatalf("parseNotification(_, %x) = %d descriptors; its SCM_RIGHTS messages carry %d", oob, len(fds), carried)
		}
		if sender != wantSender {
			t.Fatalf("parseNotification(_, %x) = sender %d, want %d", oob, sender, wantSender)
		}
	})
}
