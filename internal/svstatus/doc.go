// Package svstatus decodes the status file that supervisors of the
// daemontools family keep in a service directory, ./supervise/status:
// daemontools' supervise, runit's runsv and s6-supervise each write it,
// in a small binary layout of their own, whenever the service's state
// changes.
//
// The library reads it to learn whether the supervisor still wants the
// service up (SIGTERM then means "restart", not "stop") and to watch a
// new instance come and go; the test harness (internal/svtest) reads it
// to follow the real supervisors. Both use Parse, so a layout is decoded
// in one place.
//
// The layouts, as the tools write them. The first three were checked byte
// by byte against svstat, "sv status" and s6-svstat on Debian bookworm
// (daemontools 0.76, runit 2.1.2, s6 2.11.3); the tests hold the captures.
//
//	daemontools  18 bytes: TAI64N stamp [0:12], pid uint32 little-endian
//	             [12:16] (0 when down), paused [16], want 'u' or 'd' [17]
//	runit        20 bytes: the same, then got-TERM [18] and state [19]:
//	             0 down, 1 run, 2 finish (the pid is then ./finish's)
//	s6 ≤ 2.11    35 bytes: stamp [0:12], ready stamp [12:24], pid uint64
//	             big-endian [24:32] (./finish's while finishing), wait
//	             status [32:34], flags [34]: 0x01 paused, 0x02 finishing,
//	             0x04 want up, 0x08 ready
//	s6 ≥ 2.12    43 bytes: a pgid uint64 is inserted at [32:40], the rest
//	             moves 8 bytes on. Taken from s6's s6_svstatus_pack.c, not
//	             checked against a running s6 2.12.
//
// The length alone tells the supervisor. The stamp at the start is when
// the supervisor last changed the service's state: a new stamp with the
// service down means a process came and went, however short it ran.
//
// Parse and ParseKind are pure and fuzzed; reading the file is the
// caller's (it is one os.ReadFile).
package svstatus
