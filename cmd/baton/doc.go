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
//	baton demo [-upgrades N] [-clients N] [-mode fresh|keepalive|both|pausing] [-max-pause D]
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
//	-mode M          fresh, keepalive, both (default), or pausing: keep-alive
//	                 clients that POST and pause up to -max-pause between
//	                 requests, as a connection pool behind a proxy does
//	-max-pause D     longest pause of a pausing client (default 1s: twice
//	                 the demo server's idle grace)
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
//	             [-upgrades N] [-clients N] [-mode fresh|keepalive|both|pausing] [-max-pause D]
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
//	-mode M            fresh, keepalive, both (default), or pausing
//	-max-pause D       longest pause of a pausing client (default 1s); make
//	                   it twice your server's idle timeout while draining
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
//	                  [-upgrade-timeout DURATION] [-tls-cert FILE -tls-key FILE]
//
// The demo server alone, the same program as examples/httpserver. GET /
// answers "pid=<pid> gen=<generation>"; GET /?delay=2s sleeps first.
// SIGHUP upgrades it; SIGTERM and SIGINT drain and stop it.
//
// # baton run
//
//	baton run [--listen [NAME=]SCHEME://ADDRESS]... [--ready notify|tcp|URL]
//	          [--upgrade-timeout D] [--drain-timeout D] [--stop-signal SIG]
//	          [--restart-limit N] [--restart-window D] [--watch PATH]...
//	          [--probation D] [--max-draining N] [--metrics ADDR]
//	          [--control PATH | --name NAME] -- PROGRAM [ARGS...]
//
// A stable master (package supervisor): it opens the sockets once and runs
// PROGRAM as a worker generation, handing it the sockets the way systemd
// socket activation does — descriptors 3 and up, LISTEN_FDS,
// LISTEN_FDNAMES, and a LISTEN_PID that is the worker's own pid (baton
// re-executes itself as a trampoline that sets it and execs PROGRAM) — so
// any socket-activated server works unchanged, and a Go server using the
// baton library finds them with its usual Listen calls. Sockets systemd
// passed to baton itself are passed on too. SIGHUP, "baton reload" or a
// change of a --watch file starts a new generation; only once it is ready is the old one sent
// --stop-signal, and SIGKILL after --drain-timeout. A new generation that
// cannot start, exits, or is not ready within --upgrade-timeout is killed,
// the old one serves on, and the reason is reported with the last lines of
// its stderr (workers' stderr passes through baton, which keeps the tail).
// A reload asked while another runs fails at once ("a reload is already
// in progress"); SIGHUPs during a reload make one more reload after it.
//
// A serving worker that fails by itself (exits with a status other than 0,
// or is killed) is restarted after 100ms, doubling with each further
// failure up to 5s; the sockets stay open in baton meanwhile, so
// connections wait instead of being refused. More than --restart-limit
// failures within --restart-window, and baton run gives up and exits with
// the worker's status. A worker that exits 0 by itself stops baton run.
//
// Flags:
//
//	--listen V           a socket to open: [NAME=]SCHEME://ADDRESS, SCHEME
//	                     tcp, tcp4, tcp6, udp, udp4, udp6 or unix, such as
//	                     tcp://127.0.0.1:8080, web=tcp://:80,
//	                     unix:///run/app.sock (repeatable)
//	--ready R            notify (default): READY=1 from the worker's pid on
//	                     its private NOTIFY_SOCKET; tcp: the new worker
//	                     accepted a connection on the first TCP listener (not
//	                     merely a connect: the socket is shared, and the old
//	                     worker accepts too); http://HOST:PORT/PATH: a
//	                     connection the new worker accepted answers 200
//	--upgrade-timeout D  how long a new generation may take to be ready (1m)
//	--drain-timeout D    how long a retiring generation may drain (30s)
//	--stop-signal SIG    what tells a generation to drain: TERM (default),
//	                     INT, QUIT, HUP, USR1, USR2, WINCH or KILL
//	--restart-limit N    restart a failed serving worker at most N times
//	                     within --restart-window, then exit with its status;
//	                     -1: never restart, exit at the first failure, as
//	                     supervisor.RestartNever; 0 is refused (it once
//	                     meant never; in the library it is the default) (5)
//	--restart-window D   the period --restart-limit counts over; a worker
//	                     that has not failed for that long starts afresh,
//	                     with the shortest backoff (1m)
//	--watch PATH         reload when PATH changes (inode, size or mtime),
//	                     e.g. the program's binary or its config; checked
//	                     every 500ms, and only once the change has settled
//	                     for one more look; a removed file is not a change
//	                     (repeatable)
//	--probation D        after a new generation is ready, the old one serves
//	                     beside it for D before it is told to stop; if the
//	                     new one dies meanwhile, the old one serves on and
//	                     the reload fails ("died N ms into probation"),
//	                     baton reload exits 1; two generations serve, and
//	                     hold memory, for D (0: none)
//	--max-draining N     at most N generations draining at once: the oldest
//	                     beyond it is killed (SIGKILL), logged with the
//	                     connections it held; at most N+1 workers between
//	                     reloads, N+2 during one (0: unbounded, since a
//	                     kill drops connections)
//	--metrics ADDR       serve Prometheus metrics (GET /metrics, text format
//	                     0.0.4) on HOST:PORT; :PORT is 127.0.0.1:PORT; a
//	                     host that is not loopback is allowed, and logged
//	--control PATH       the control socket (default below)
//	--name NAME          the service's name, for the default control socket
//	                     $XDG_RUNTIME_DIR/baton/NAME/control.sock, or
//	                     /run/baton/NAME/control.sock for root, or
//	                     $TMPDIR/baton-UID/NAME/control.sock (NAME: default)
//
// The control socket's directory must be the user's own, mode 0700; a
// peer of another uid is disconnected without an answer. A socket no one
// answers on at the control path (left by a master that was killed) is
// replaced; anything else there — a live socket, a file, a symbolic link
// — makes baton run exit 3 and is left alone. baton run reaps
// every child — it is a child subreaper, or PID 1 of a container — and
// once the workers have exited on a stop, it sends SIGTERM, then SIGKILL,
// to what they left behind. It exits with the serving worker's status
// (128+N for signal N), or 3 if the first generation never served. A
// generation still running at its --drain-timeout is killed, and the log
// says which and how many connections it still held.
//
// If baton run itself is killed (SIGKILL), its workers keep serving,
// orphaned, on their own copies of the sockets, until they write to
// their standard error (nobody reads it any more: EPIPE, or SIGPIPE) or
// are stopped. A baton run started again meanwhile cannot bind the
// address they hold and exits 3; under systemd, KillMode stops the
// leftovers of the unit before it restarts it.
//
// Under systemd (NOTIFY_SOCKET set), baton run is the stable main process:
// READY=1 once the first worker is ready, RELOADING=1 and READY=1 around
// each reload, STOPPING=1, STATUS= lines. Workers get baton's private
// NOTIFY_SOCKET, never systemd's.
//
//	[Service]
//	Type=notify
//	ExecStart=/usr/local/bin/baton run --listen tcp://:8080 -- /usr/local/bin/app
//	ExecReload=/usr/local/bin/baton reload
//
// As PID 1 of a container, baton run is the init the container needs: it
// reaps every process in it, forwards the signals above, and the
// container's exit status is the worker's ("podman kill --signal HUP"
// reloads, "podman stop" drains). It runs as any user on a read-only root
// file system: the control socket goes to $TMPDIR/baton-UID/NAME/, so give
// /tmp a tmpfs (an emptyDir in Kubernetes). --watch follows symbolic
// links, so it sees a Kubernetes ConfigMap mounted as a directory
// (KEY -> ..data/KEY) change when the kubelet swaps its ..data link, and
// the pod reloads in place; a subPath mount is never updated.
// examples/kubernetes has a Deployment, its probes and why.
//
//	ENTRYPOINT ["/baton", "run", "--listen", "web=tcp://:8080", "--watch", "/etc/app/config.json", "--", "/app"]
//
// # baton reload, baton status, baton stop
//
//	baton reload [--master] [--json] [--timeout D] [--control PATH | --name NAME]
//	baton status [--json] [--control PATH | --name NAME]
//	baton stop   [--json] [--control PATH | --name NAME]
//
// They talk to the master of "baton run" through its control socket (the
// same --control or --name). reload returns when the new generation serves
// (exit 0) or has failed (exit 1; the reason and its last lines of stderr
// are printed, and the old generation still serves); --json prints the
// generation, the old and new pids, the duration and, on failure, the
// error and the stderr lines; with --probation, reload returns once the
// probation is over, and fails if the new generation died on it. status
// prints the master and each generation: pid, state (starting, probation,
// serving, draining, stopping, failed), when it started, its age, how long
// it took to be ready, since when it drains, its established connections
// and its resident memory; then the reloads that succeeded and failed
// (with the last error and when), the restarts, the generations killed
// (at the drain deadline, beyond --max-draining) and the drains (count,
// mean, last). --json prints supervisor.Status: the same, with a
// histogram of the drain durations. stop returns once every generation
// has exited. All three exit 3 when no
// master answers.
//
// reload --master upgrades the master itself: it execs its new binary (the
// path "baton run" was started as, symlinks kept) in place, keeping its
// pid, its sockets, its control socket and its workers, and the new binary
// answers. A binary that does not run (a trial run must exit 0) is refused
// and the master goes on as it was (exit 1).
//
// # Exit status
//
//	0  success; for demo and verify: no failed request and no failed upgrade
//	1  it ran and something failed (the report says what), or, for demo
//	   and verify, it was interrupted before its last upgrade (no proof)
//	2  bad command line
//	3  it could not start (the server never answered; for run: the
//	   sockets could not be opened or the first generation never served;
//	   for reload, status and stop: no master answered)
//
// "baton run" exits with its serving worker's status once stopped.
//
// # Signals
//
// SIGINT and SIGTERM end "baton demo" early: the load stops, the report so
// far is printed, and the demo server is stopped. They end "baton verify"
// the same way, once a reload command under way is killed; your server is
// left as it is.
//
// "baton run": SIGHUP reloads; SIGINT and SIGTERM stop every generation
// gracefully (--stop-signal, SIGKILL after --drain-timeout); SIGUSR1,
// SIGUSR2 and SIGWINCH go to the serving worker; other signals are not
// forwarded.
//
// # Environment
//
// BATON_HANDOFF is private to the library: it tells a successor where its
// handoff socket is, and is removed from the environment at once.
//
// "baton run" gives its workers LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID and a
// private NOTIFY_SOCKET, and removes its own LISTEN_*, NOTIFY_SOCKET and
// WATCHDOG_* from what they inherit. XDG_RUNTIME_DIR places the default
// control socket.
package main
