// Package environ scrubs environment lists ("NAME=value" entries, as
// os.Environ returns them) before they are given to another process.
//
// Variables meant for one process must not reach the next: LISTEN_FDS is
// valid only where LISTEN_PID names the reader, WATCHDOG_PID names the
// process the watchdog expects pings from, NOTIFY_SOCKET belongs to the
// process systemd started, and baton's own handoff variables name a
// socket and a parent that only one child may use. The library's
// successor, the master's workers and the CLI's wrapped program are each
// given an environment made with these functions, so the rule "which
// name matches" is written once: a name matches an entry whose text
// before the first '=' equals it exactly — case matters, a prefix of a
// name is not the name, and an entry without '=' is a name with no value.
//
// The functions are pure and never modify their argument.
package environ
