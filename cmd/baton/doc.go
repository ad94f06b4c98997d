// Command baton replaces a network server — new binary, new config —
// without refusing, resetting or dropping a single connection, and proves
// it.
//
// Usage:
//
//	baton <command> [flags]
//
// # baton demo
//
//	baton demo [-upgrades N] [-clients N] [-mode fresh|keepalive|both]
//	           [-slow DURATION] [-listen ADDR] [-drain DURATION] [-json]
//
// Starts the demo server (this binary, as "baton demo-server"), drives HTTP
// load at it from clients that never retry — in the "fresh" mode every
// request opens a new connection, in the "keepalive" mode connections are
// reused until the server says close — and upgrades it N times the way an
// operator would: SIGHUP to the pid in its PID file, then wait until the
// PID file names the new generation. Before each upgrade a slow request
// (?delay=) is started; it must complete across the upgrade. The report
// counts requests and failures by class (refused, reset, eof, timeout,
// non-200, other), upgrades and their latency (p50, p99), request latency
// near upgrades against steady state, and the generations that served.
//
// Flags:
//
//	-upgrades N      upgrades to perform (default 10)
//	-clients N       concurrent clients per mode (default 16)
//	-mode M          fresh, keepalive or both (default both)
//	-slow D          delay of the slow request before each upgrade (default 1s)
//	-listen ADDR     loopback address for the server; port 0 picks a free one
//	                 (default 127.0.0.1:0). Traffic never leaves loopback.
//	-drain D         drain deadline of each retiring generation (default 10s)
//	-json            print the report as JSON on stdout
//
// Progress goes to stderr (a bar on a terminal, a line per upgrade
// elsewhere), the report to stdout. When "baton demo" ends, the serving
// generation is stopped with SIGTERM and every generation is reaped: on
// Linux baton becomes a child subreaper, so orphaned generations come back
// to it.
//
// # baton demo-server
//
//	baton demo-server [-listen ADDR] [-pid-file PATH] [-drain DURATION]
//	                  [-upgrade-timeout DURATION]
//
// The demo server alone, the same program as examples/httpserver. GET /
// answers "pid=<pid> gen=<generation>"; GET /?delay=2s sleeps first.
// SIGHUP upgrades it; SIGTERM and SIGINT drain and stop it.
//
// # Exit status
//
//	0  success; for demo: no failed request and no failed upgrade
//	1  it ran and something failed (the report says what)
//	2  bad command line
//	3  it could not start (the demo server never answered)
//
// # Signals
//
// SIGINT and SIGTERM end "baton demo" early: the load stops, the report so
// far is printed, and the demo server is stopped.
//
// # Environment
//
// BATON_HANDOFF is private to the library: it tells a successor where its
// handoff socket is, and is removed from the environment at once.
package main
