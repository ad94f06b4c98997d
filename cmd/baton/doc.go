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
// # baton verify
//
//	baton verify -url URL -reload CMD [-pid-file PATH] [-ready-timeout D]
//	             [-upgrades N] [-clients N] [-mode fresh|keepalive|both]
//	             [-slow D] [-warmup D] [-settle D] [-allow-remote] [-json]
//
// The load and the report of "baton demo", pointed at your own running
// server: proof of zero downtime for your service, in your CI. It neither
// starts nor stops the server. Each upgrade runs CMD with /bin/sh -c (stdin
// is /dev/null); an exit status other than 0 is a failed upgrade, and the
// end of CMD's output is in the report. The upgrade is over when CMD
// returns, which suits synchronous reloads ("systemctl reload" of a
// Type=notify-reload unit, a deploy script that waits). "kill -HUP" returns
// at once: add -pid-file PATH, and after CMD the upgrade also waits until
// PATH names a pid other than the one it named before CMD ran. baton writes
// its PID file atomically, once the successor is ready, so a new pid is the
// end of the handover; a failed upgrade leaves the old pid, and is reported
// when -ready-timeout runs out. To wait on anything else, put the wait in
// CMD: -reload 'kill -HUP $(cat app.pid) && ./wait-ready.sh'.
//
// Flags:
//
//	-url URL           what every client requests with GET (required). http://
//	                   only; the host must be loopback (an IP literal or
//	                   "localhost") unless -allow-remote is given.
//	-reload CMD        the shell command that upgrades the server (required)
//	-pid-file PATH     after CMD, wait until PATH names a new pid
//	-ready-timeout D   bound of one upgrade, CMD and the wait together; CMD is
//	                   killed at it (default 2m, above the library's 1m
//	                   UpgradeTimeout)
//	-upgrades N        upgrades to perform (default 10)
//	-clients N         concurrent clients per mode (default 16)
//	-mode M            fresh, keepalive or both (default both)
//	-slow D            delay asked (?delay=D) of the slow request started before
//	                   each upgrade; 0: none (default 1s). A server that
//	                   ignores the parameter answers at once and still passes.
//	-warmup D          load before the first upgrade; a server that gives no
//	                   response within it makes verify exit 3 (default 1s)
//	-settle D          load between upgrades and after the last (default 300ms)
//	-allow-remote      allow a non-loopback host
//	-json              print the report as JSON on stdout
//
// Exit status 1 means a request, a slow request or an upgrade failed, or the
// run was interrupted before its last upgrade (not a proof either way); 3
// means the server never answered during -warmup, or -pid-file could not be
// read before the first upgrade. If the response bodies carry pid=<n>, the
// report counts the pids that served: N upgrades that replace the process
// show N+1. Pitfall: CMD is killed at -ready-timeout but processes it
// started in the background are not.
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
//	0  success; for demo and verify: no failed request and no failed upgrade
//	1  it ran and something failed (the report says what), or, for demo
//	   and verify, it was interrupted before its last upgrade (no proof)
//	2  bad command line
//	3  it could not start (the server never answered)
//
// # Signals
//
// SIGINT and SIGTERM end "baton demo" early: the load stops, the report so
// far is printed, and the demo server is stopped. They end "baton verify"
// the same way, once a reload command under way is killed; your server is
// left as it is.
//
// # Environment
//
// BATON_HANDOFF is private to the library: it tells a successor where its
// handoff socket is, and is removed from the environment at once.
package main
