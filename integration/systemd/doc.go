// Package systemd holds baton's integration tests against a real systemd:
// systemd 252 booted from a Debian bookworm rootfs with systemd-nspawn
// (see internal/nspawn), running the demo server (examples/httpserver)
// under load from internal/loadgen. It has no code of its own; the tests
// are the point.
//
// Run them as root on Linux with systemd-container installed:
//
//	go test -race -count=1 -v ./integration/systemd/
//
// The demo server is built once per test binary (CGO_ENABLED=0, so the
// binary runs in the container whatever the host's libc). A container is
// booted twice, one after the other: in the cgroup layout nspawn picks for
// the host (hybrid on a hybrid host) and in the unified one, because what
// systemd learns about a unit's processes differs between them. In each,
// the scenarios are units, run one after another:
//
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
// Without root, nspawn or a rootfs the tests skip, or fail if
// BATON_REQUIRE_INTEGRATION=1. The whole package takes about a minute on a
// warm rootfs cache (about 30s more when the rootfs must be built).
package systemd
