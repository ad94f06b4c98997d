// Package soak measures a server across many consecutive upgrades: its
// test upgrades the demo server (examples/httpserver/server, in the test
// binary re-executed as a helper) over and over under load from
// internal/loadgen, and proves that nothing failed and nothing grew.
//
// # What is measured, and when
//
// Each generation is a new process, so numbers are only comparable when
// they are taken at the same point of each one's life: here, the moment
// the PID file names it (it is written once the generation is ready and
// its predecessor has committed to draining). Sample reads then, from
// /proc:
//
//	fds    every open descriptor
//	conns  of which TCP connections: they come and go with the clients,
//	       at most one per client plus the slow request
//	other  the rest: stdio, the listener, the handoff socket, the
//	       runtime's epoll and wakeup descriptors. A descriptor leaked
//	       from one generation to the next (inherited without
//	       close-on-exec, or never closed) shows up here, and only here
//	       is the count steady enough to see one.
//	rss    VmRSS of /proc/PID/status, in KiB
//
// A descriptor is told apart by asking the socket itself, through a
// duplicate taken with pidfd_getfd and closed at once: /proc/net/tcp is
// not read atomically, and while thousands of connections a second open
// and close it misses some, which would then pass for "other".
//
// # Running it
//
// "make test" runs 20 upgrades (with the race detector) so that the soak
// cannot rot; "make soak" runs 1,000. BATON_SOAK_UPGRADES sets the count.
//
// # Platforms
//
// Linux only: everything comes from /proc.
package soak
