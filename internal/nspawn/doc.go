// Package nspawn boots a real systemd in a systemd-nspawn container, for
// tests that must see what systemd does rather than what its documentation
// says: which notifications it hears, what it calls the main process, what
// it kills at stop, what it keeps in a file descriptor store.
//
// It is test support: every function takes a testing.TB and fails or skips
// the test itself.
//
// # The rootfs
//
// [EnsureRootfs] returns a Debian tree with systemd in it, of the
// [Release] asked for: [Bookworm] (systemd 252, the default) at
// /var/cache/baton/rootfs or where BATON_ROOTFS says, [Trixie] (systemd
// 257) at /var/cache/baton/rootfs-trixie or where BATON_ROOTFS_TRIXIE
// says. If it is missing it is built once with
//
//	debootstrap --variant=minbase --include=systemd,systemd-sysv RELEASE DIR http://deb.debian.org/debian
//
// into a temporary directory beside it, renamed into place when complete, so
// a half-built tree is never booted. A lock file beside it, one per
// release, makes concurrent test binaries wait for one build of that
// release and never for the other's. A tree found in place must say it is
// of the release (VERSION_CODENAME in its os-release), or the test fails:
// a variable pointing the 257 tests at a bookworm tree must not pass them
// on 252. The tree is never written to: containers boot it with
// --volatile=overlay, a tmpfs overlay that vanishes with them.
//
// Measured here (2 cores, deb.debian.org): building trixie takes 27s,
// bookworm about 30s; either boots in 300 to 400ms.
//
// Bookworm's debootstrap (1.0.128) builds trixie, and the host's nspawn
// (252) boots it, in either cgroup layout: systemd 257 still runs on a
// hybrid host's v1 hierarchy, though 256 deprecated it.
//
// # A container
//
// [Boot] (Options.Release says which tree) starts
//
//	systemd-nspawn --register=no --keep-unit --boot --volatile=overlay \
//	    --directory=ROOTFS --machine=NAME --bind=DIR:/opt/baton ...
//
// and returns once "systemctl is-system-running" answers running or
// degraded (200 to 400ms of boot here). The container shares the
// host's network namespace, so a service inside listening on 127.0.0.1 is
// reachable from the test directly; it has its own pid namespace, so every
// pid systemd reports (MainPID, $MAINPID, a pid file, a pid a server puts
// in its responses) is a pid in the container, and all of them agree.
//
// --register=no and --keep-unit keep nspawn away from systemd-machined and
// from a host service manager, neither of which a test machine need have.
// nspawn then makes its own cgroup the container's: it creates "payload"
// (the container's systemd and everything under it) and "supervisor" (nspawn
// itself) inside it. Boot therefore starts nspawn through a one-line shell
// script that first moves itself into a fresh cgroup made for this
// container, in every cgroup hierarchy nspawn uses: the named v1 hierarchy
// /sys/fs/cgroup/systemd and the unified /sys/fs/cgroup/unified on a hybrid
// host, /sys/fs/cgroup on a unified one. Moving before the exec, not after
// the start, leaves no moment at which nspawn could set up its payload in
// the wrong cgroup.
//
// [Container.Run] executes a command inside with
//
//	nsenter -t PID -m -u -i -n -p -C -- CMD...
//
// where PID is the container's systemd as the host sees it; systemctl then
// talks to that systemd over its private socket (no D-Bus in the rootfs).
// [Container.Systemctl], [Container.Show], [Container.Journal] and
// [Container.InstallUnit] are built on it.
//
// # Teardown
//
// Boot registers a cleanup that stops the container and fails the test if
// anything of it is left. nspawn gets SIGTERM, which it turns into a clean
// halt of the container (SIGRTMIN+3 to its systemd); if that takes longer
// than ShutdownTimeout, nspawn is killed. Then whatever still runs in the
// container's cgroups is killed, the cgroups are removed, and nspawn's own
// leftovers from an unclean exit (its propagation directory under
// /run/systemd/nspawn/propagate and unheld image lock files) are deleted.
// A test binary that dies before its cleanups run leaves no container
// either: nspawn has SIGTERM as its parent-death signal, and halts the
// container on it. (SIGKILL would not do: the container's systemd
// outlives a killed nspawn.) The next Boot on the machine removes the
// cgroups such a binary left, and kills what still runs in them.
//
// # Cgroup layouts
//
// On a hybrid host nspawn gives the container a hybrid layout: systemd
// tracks units in the v1 name=systemd hierarchy. Options.Unified boots it
// with the unified one instead (SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1), as on
// most systems today; Container.Cgroups says which the container got.
//
// # Unavailable
//
// Without root, systemd-nspawn, nsenter, a writable cgroup hierarchy or a
// rootfs (and debootstrap to build one), the test is skipped with the
// reason, unless BATON_REQUIRE_INTEGRATION=1: then it fails, so that CI
// cannot pass by running nothing.
//
// # Pitfalls
//
//   - The minbase rootfs has no /bin/kill: a unit writes
//     ExecReload=/bin/sh -c "kill -HUP $MAINPID".
//   - systemd rate-limits starts: by default a sixth start within 10s fails
//     with Result=start-limit-hit. A unit restarted in a loop needs
//     StartLimitIntervalSec=0 in [Unit].
//   - A port the test picks is a port on the host: pick a free one there.
package nspawn
