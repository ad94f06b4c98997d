// Package supervisors holds integration tests, and nothing else: baton's
// demo HTTP server (examples/httpserver) run by the real daemontools
// (supervise, svc), runit (runsv, sv) and s6 (s6-supervise, s6-svc).
//
// For each supervisor the test writes a service directory whose run
// script execs the server with -control, restarts it 10 times the way an
// operator would (svc -t, sv restart, s6-svc -r) while 16 clients per mode
// that never retry send requests, and requires that not one request
// failed, that every restart ended with the supervisor tracking a new
// process that serves, and that a plain stop (svc -d, sv stop, s6-svc -d)
// leaves no server process and a port that refuses connections. s6 runs a
// second time with a notification-fd, restarted with s6-svc -r -wR, which
// must return only once s6 has heard the new instance say it is ready.
//
// TestFaults (faults_test.go) is the fault-injection suite of the same
// topology, under runit: a test-only server, internal/faultserver, exits,
// hangs or stops itself at a chosen point of a new instance's start, or
// waits at a gate while the test kills the generation it takes over
// from; ./run execs a missing, non-executable or broken binary; the
// supervisor dies; 50 restarts come within a second; slow requests
// outlast the drain deadline. Each case states whether zero failed
// requests is possible and, where it is not, why, and bounds the
// failures; each checks the logs for the cause, the survivor's
// descriptors, and that a final stop leaves nothing running.
//
// TestMain builds both servers once and makes the test process a child
// subreaper (see internal/svtest). A missing supervisor skips its test,
// saying so, unless BATON_REQUIRE_INTEGRATION=1 (make test sets it), when
// it fails it. Linux only: the harness reads /proc.
//
//	go test -race -count=1 ./integration/supervisors/
package supervisors
