// Package systemd holds baton's integration tests against a real systemd:
// systemd 252 booted from a Debian bookworm rootfs and systemd 257 from a
// Debian trixie one, with systemd-nspawn (see internal/nspawn), running
// the demo server (examples/httpserver) under load from internal/loadgen.
// It has no code of its own; the tests are the point.
//
// Run them as root on Linux with systemd-container installed:
//
//	go test -race -count=1 -v ./integration/systemd/
//
// The demo server and cmd/baton are built once per test binary
// (CGO_ENABLED=0, so they run in the container whatever the host's
// libc). TestSystemd
// boots three containers, one after the other: systemd 252 in the cgroup
// layout nspawn picks for the host (hybrid on a hybrid host) and in the
// unified one, because what systemd learns about a unit's processes
// differs between them; then systemd 257 in the unified layout (256
// deprecated the v1 hierarchy; real 257 systems run the unified one). In
// each, the scenarios are units, run one after another (on 257, the two
// notify-reload ones, probation, reload and stop-while-draining: socket
// and fdstore pass there too, but they prove systemd's restarts, where
// baton does nothing that depends on the version, and cost 20 to 40s):
//
//   - notify-reload (257 only): Type=notify-reload, no ExecReload,
//     NotifyAccess=main. systemctl reload sends SIGHUP and waits for
//     READY=1, which the incumbent sends together with
//     MAINPID=<successor>: the moment systemctl reload returns, MainPID is
//     the new generation, a child of systemd, in the pid file and
//     answering HTTP; a successor that sleeps a second before starting
//     holds the reload that long. Every third reload installs a build
//     that exits at once: systemctl reload still exits 0 (READY=1 ends a
//     reload as done; systemd has no "reload failed" notification short
//     of the timeout), MainPID stays the old generation, which serves,
//     and StatusText says "upgrade failed, generation N still serving: …".
//     Ten reloads under load fail no request; then stop: Result=success,
//     nothing of the unit left. The replaced generation may still accept
//     for a moment after the reload returned (it is told to drain right
//     after), so "it serves" means HTTP answers from it within 5s.
//   - master-notify-reload (257 only): the same cycle with "baton run"
//     (cmd/baton, built static too) as the unit's main process and the
//     demo server as its worker. MainPID stays the master throughout;
//     when systemctl reload returns a new worker answers, or, after the
//     build that exits, the old one does and StatusText says "reload
//     failed: exited before it was ready: exit status 3; still serving".
//   - probation (257 only): Type=notify-reload with the demo server on
//     probation (-probation 3s): the incumbent serves beside its ready
//     successor for the window and sends MAINPID= and READY=1 only then.
//     Two reloads to a good build: until systemctl reload returns,
//     MainPID and the pid file name the old generation, the successor is
//     a child of systemd in the unit's cgroup, and both answer HTTP; the
//     reload returns no sooner than the window after the incumbent logged
//     the successor ready (the log line's time, the host's clock); then
//     MainPID is the successor. No request fails. Two reloads whose
//     successor is killed (kill -9) a second into its window: the reload
//     exits 0, MainPID and the pid file still name the old generation,
//     which serves, and StatusText says "failed on probation: died …
//     after ready"; no connection is refused, and only what the killed
//     successor had in flight fails (eof or reset, at most one per
//     client per kill). Then stop: Result=success, nothing left.
//   - reload: Type=notify, ExecReload=/bin/sh -c "kill -HUP $MAINPID",
//     NotifyAccess=main (the default). Ten reloads under load fail no
//     request; after each, systemd's MainPID is the process answering HTTP
//     and the one in the pid file, a child of systemd, the unit active and
//     running, the listening socket the same one. Then stop:
//     Result=success, no SIGKILL, nothing of the unit left, the port
//     refusing.
//   - stop-while-draining: stop right after a reload, while the replaced
//     generation drains a slow request: the request completes and the stop
//     is clean.
//   - socket: a .socket unit holds the listener; ten "systemctl restart"
//     of the service under load refuse no connection. A restart stops the
//     old process before starting the new one, so this measures what a
//     plain restart costs; only the new-connection-per-request clients
//     must see no failure.
//   - fdstore: no .socket unit; the server pushes its listener into the
//     file descriptor store (-fd-store, FileDescriptorStoreMax=4). Ten
//     restarts, then one SIGKILL with Restart=always: no connection
//     refused, the socket the same one throughout.
//
// Every unit runs with StartLimitIntervalSec=0, or its sixth start within
// 10s would fail (start-limit-hit). Reports of every run are logged (see
// them with -v).
//
// TestNotifier runs package systemd's Notifier as a service in front of
// both managers: the test binary itself, copied into the container, with
// BATON_NOTIFY_PROBE naming what it does (probe_test.go). It answers
// through its unit (StatusText, MainPID, how long a reload takes), so the
// test reads systemctl and polls nothing. It proves:
//
//   - Barrier returns only once the STATUS= sent before it is what
//     systemd shows.
//   - MAINPID= from a child of the main process is ignored with
//     NotifyAccess=main and NotifyAccess=exec (exec admits the main and
//     control processes, not their children), accepted with
//     NotifyAccess=all, and accepted after the main process sent
//     NOTIFYACCESS=all on 257 (ignored by 252, which predates it). 252
//     logs "reception only permitted for main PID" for a dropped message;
//     257 logs nothing at its default level.
//   - On 257, Type=notify-reload: systemctl reload waits for the READY=1
//     that follows RELOADING=1 with MONOTONIC_USEC= (as Reloading sends
//     it); RELOADING=1 without MONOTONIC_USEC= is ignored, and so is the
//     READY=1 after it: the reload fails at its timeout
//     (TimeoutStartSec=, ReloadResult=timeout) though the service stays
//     active.
//
// Without root, nspawn or a rootfs the tests skip, or fail if
// BATON_REQUIRE_INTEGRATION=1. The whole package takes about two and a
// half minutes with -race on 2 cores and warm rootfs caches (each rootfs
// takes about 30s more when it must be built: debootstrap, once per
// machine).
package systemd
