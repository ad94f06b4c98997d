// Package containers holds integration tests, and nothing else: "baton
// run" as PID 1 of real containers, and as the entrypoint of the
// Kubernetes example (examples/kubernetes).
//
// TestContainer starts containers with podman (Debian 12's 4.3.1) and
// runc — not crun, which refuses this machine kind's hybrid cgroups (see
// podmanGlobal in podman_test.go) — from a root file system the test
// makes: a directory holding nothing but static binaries (CGO_ENABLED=0)
// of baton, the reference server (examples/httpserver) and a test worker
// (internal/worker). No image, no registry: podman run --rootfs DIR. The
// binaries are built afresh by every run (a few seconds with Go's build
// cache) rather than cached as a root file system, so they always match
// the source. podman gets a store of its own in the test's temporary
// directory (--root, --runroot, --tmpdir), so the tests share nothing
// with other podman users of the machine and leave nothing behind. Each
// container shares the host's network (--network host), so that the
// load goes to 127.0.0.1, and runs as uid 65532 on a read-only root file
// system, as the example's pod does.
//
//   - reload-under-load: 10 × podman kill --signal HUP while 16 clients per
//     mode (a new connection per request, keep-alive) that never retry
//     send requests, a slow request crossing each reload: 0 failed;
//     exactly one new generation per SIGHUP, the old one drained and
//     exited 0, no zombie among the children of PID 1 (read from the
//     host's /proc) after any reload; podman stop ends the container with
//     status 0, the drained worker's, and no process of it is left.
//   - orphans-and-exit-status: a worker double-forks three children that
//     exit (baton, PID 1, reaps them: its status counts 3, no zombie) and
//     one that runs on, which baton stops with SIGTERM on podman stop (it
//     leaves a mark in a mounted directory: the kernel's end of the pid
//     namespace would have been SIGKILL); the container's exit status is
//     the worker's, 7.
//   - crash-exit-status: with --restart-limit -1, a worker killed with
//     SIGKILL ends the container by itself, with status 137.
//
// TestContainerKubernetesExample runs the command line of
// examples/kubernetes/deployment.yaml as it is (the port aside) in such a
// container, as the pod would: /baton and /greeter where the Containerfile
// puts them, the ConfigMap directory bind-mounted read-only where the
// Deployment mounts it and updated on the host the kubelet's way (two
// updates, two reloads, the new greeting served), and the liveness
// probe's command (/baton status) run in the container.
//
// TestConfigMapWatch needs no container: it runs the command line of
// examples/kubernetes/deployment.yaml (port, directory and binaries
// replaced) and updates its ConfigMap directory exactly as the kubelet
// does — a new timestamped directory, a ..data_tmp symlink renamed over
// ..data, the old directory removed — five times under load: each update
// makes exactly one reload (--watch follows config.json -> ..data/… to a
// new inode), the new generation serves the new configuration, 0
// requests fail; a configuration the worker refuses leaves the old
// generation serving; no reload comes without a change.
// TestKubernetesExample checks the rest of the example against the code:
// the flags of baton run and of the worker (through their own flag sets),
// the probes and ports, the ConfigMap mount, the grace period and the
// Containerfile.
//
// The tests wait on events, not by polling: the master's log lines
// (generation ready, generation exited), read as they come from the
// container's output. The one exception is the count of reaped orphans,
// which baton does not log at its default level: it is read from "baton
// status --json" (podman exec) until it is there.
//
// Prerequisites: root, podman and runc (make deps installs them). A
// missing one skips TestContainer, saying so, unless
// BATON_REQUIRE_INTEGRATION=1 (make test sets it), when it fails it.
// Linux only. About 30 s on 2 cores, builds included:
//
//	go test -race -count=1 ./integration/containers/
package containers
