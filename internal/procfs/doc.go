// Package procfs reads what Linux says about processes under /proc: the
// state, parent and start time of a process (/proc/PID/stat), the
// sockets among its descriptors (/proc/PID/fd), its resident memory
// (/proc/PID/status) and the TCP sockets of the network namespace
// (/proc/net/tcp, /proc/net/tcp6).
//
// It is the one place baton parses /proc — the library, the master, the
// CLI's reaper, the test harnesses and the benchmarks all come here — so
// that the pitfalls below are handled once:
//
//   - The command name in /proc/PID/stat is in parentheses and may hold
//     anything the process chose (prctl PR_SET_NAME): spaces, ')' and
//     newlines included. The fields that follow start after the LAST ')'.
//     ParseStat is strict otherwise: a line that does not have every field
//     up to the start time, in the kernel's format, is an error, never a
//     zero value that would read as "PPID 0" or "state ”".
//   - A process that has exited but was not reaped (a zombie, state Z) or
//     is being torn down (X) still has a /proc entry, and kill(pid, 0)
//     succeeds on it. Alive says whether a process still runs; on the
//     machines this was written on an orphan can linger as a zombie for
//     seconds before PID 1 reaps it.
//   - A process can exit between a listing and a read: every reader that
//     walks /proc (Children) leaves out what vanished meanwhile, and
//     ReadStat's error wraps fs.ErrNotExist when there is no such process.
//   - A descriptor's link reads "socket:[INODE]" for a socket; the inode is
//     what /proc/net/tcp and sock_diag name it by.
//
// The parsers (ParseStat, ParseSocketLink, ParseVmRSS, ParseNetTCP) are
// pure functions from bytes to values, table-tested and fuzzed; the
// readers around them only touch the file system.
//
// Platforms: Linux. Elsewhere every reader returns ErrNotSupported; the
// parsers work everywhere.
package procfs
