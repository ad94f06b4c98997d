// Package svtest runs a service under a real supervisor of the daemontools
// family — daemontools (supervise, svc), runit (runsv, sv) or s6
// (s6-supervise, s6-svc) — for tests, and reads what the supervisor
// believes about it.
//
//	svc := svtest.NewService(t)            // Root/service, a free port, paths
//	svc.WriteRun(server, "-listen", svc.Addr, …)
//	sup := svtest.Start(t, svtest.Runit, svc)
//	pid, err := sup.WaitServing(ctx, 0)     // up, wanted up, pid file, HTTP agree
//	sup.Restart(ctx)                         // sv restart
//	pid, err = sup.WaitServing(ctx, pid)    // a new process serves
//	sup.Stop(ctx)                            // sv stop
//	sup.Term(ctx)                            // sv term: SIGTERM, no wait
//	sup.Kill()                               // SIGKILL the supervisor itself
//
// # Processes
//
// The supervisor is a child of the test process, started on the service
// directory with its output in a file. When the test ends it is told to
// bring the service down and exit (svc -dx, sv exit, s6-svc -dx); a
// supervisor still running 15s later, and any process still working in
// the service's Root or naming it on its command line 2s after the
// supervisor is gone, fail the test and are killed with SIGKILL. Nothing
// outlives a test, failed or not. A test binary that dies without running
// its cleanups (a panic, go test -timeout) sends its supervisors SIGTERM
// as it goes (a parent-death signal): runsv and s6-supervise then stop the
// service and exit, daemontools' supervise just dies, and leaves it.
//
// Call BecomeSubreaper from TestMain. A supervisor reaps its own children
// (the service, and anything the service started as a sibling of itself
// with CLONE_PARENT), but a process orphaned by a dying supervisor would
// go to PID 1, out of the test's sight, and in containers and sandboxes
// PID 1 may reap late or never. As a subreaper the test process adopts
// such orphans, and teardown kills them and reaps the ones it recognises
// by name; it never waits for a pid it does not know, which could steal
// the exit status of a command os/exec is waiting for.
//
// # Status files
//
// Each supervisor keeps a binary supervise/status in the service
// directory; ParseStatus decodes the three layouts (with package
// internal/svstatus, which the library uses too),
// verified against svstat, sv status and s6-svstat. The status is the
// supervisor's view: the pid it tracks, whether that process runs, and
// whether the supervisor wants it up, that is, whether it starts ./run
// again when the process exits.
//
// # Pitfalls
//
// Observed on Debian bookworm (daemontools 0.76, runit 2.1.2, s6 2.11.3):
//
//   - svc -d and s6-svc -d send SIGTERM first and write "want down" to the
//     status file after, so a process that reads the status as soon as
//     SIGTERM arrives may still read "want up". runsv writes the status
//     first.
//   - A restart is not always immediate. supervise sleeps a second after
//     each start and reads no command meanwhile; runsv waits a second
//     before restarting a service that ran less than a second; s6-supervise
//     keeps a second between two starts, and waits a whole second after
//     the death of a service that was not ready for more than a second,
//     which, without a notification-fd, is every service.
//   - s6-svc -wU and -wR need a notification-fd file in the service
//     directory (WriteNotificationFD); without one s6-svc prints a warning
//     and does not wait for readiness. Status.Ready is s6's ready flag.
//   - sv restart and sv stop wait up to 7s for the service to change
//     state; svc and s6-svc return at once.
//   - runsv and s6-supervise give meaning to names in the service
//     directory (log, finish, down, notification-fd, …), so Service keeps
//     its own files in Root, beside the service directory.
package svtest
