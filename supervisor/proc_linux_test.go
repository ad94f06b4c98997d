package supervisor

import (
	"fmt"
	"testing"
)

// FuzzParseProcStat reads /proc/PID/stat lines built as the kernel writes
// them, with any command name (')', spaces and newlines included), and
// lines of any bytes: the parent pid and state come back as written.
func FuzzParseProcStat(f *testing.F) {
	f.Add([]byte("1 (systemd) S 0 1 1 0 -1 4194560\n"), "sleep", byte('S'), uint32(1))
	f.Add([]byte("42 (a) b) Z 7 42\n"), "a) b", byte('Z'), uint32(7))
	f.Add([]byte("42 (x"), "x) R 99 (", byte('R'), uint32(1<<31-1))
	f.Add([]byte(")"), "new\nline", byte('D'), uint32(0))
	f.Add([]byte("7 (w) S -3 1"), " ", byte('X'), uint32(4194304))
	f.Fuzz(func(t *testing.T, raw []byte, comm string, state byte, ppid uint32) {
		parseProcStat(raw)
		if !('A' <= state && state <= 'Z' || 'a' <= state && state <= 'z') {
			state = 'S'
		}
		ppid &= 1<<31 - 1
		line := fmt.Sprintf("4242 (%s) %c %d 4242 4242 0 -1 4194560 1086 0 0 0\n", comm, state, ppid)
		gotPPID, gotState := parseProcStat([]byte(line))
		if gotPPID != int(ppid) || gotState != string(state) {
			t.Fatalf("parseProcStat(%q) = %d, %q; want %d, %q", line, gotPPID, gotState, ppid, string(state))
		}
	})
}
