// Package bench compares baton with github.com/cloudflare/tableflip on the
// two costs a zero-downtime upgrader adds to a server: the time of one
// handoff, and the memory of an idle upgrader. It is its own module so that
// tableflip never becomes a dependency of baton.
//
// Everything lives in the tests; this file only tells the story.
//
// # Handoff
//
// BenchmarkHandoff/lib=L/sockets=N runs a chain of real processes: the test
// binary re-executed as a small server (TestMain dispatches on the
// BENCH_HELPER variable, which stays set so that every successor is the
// server again and never the test suite). Generation 1 opens N TCP
// listeners on 127.0.0.1:0 and registers each under its own name (baton:
// Add/Listener; tableflip: AddListener/Listener with the name as key),
// accepts on all of them, calls Ready, waits for its predecessor to be gone
// (tableflip refuses to upgrade before that) and prints "ready pid=P" on
// stdout, a pipe shared by every generation. On SIGHUP it calls Upgrade and
// prints "upgraded pid=P ns=D", D being the time from just before Upgrade
// to its nil return (in both libraries: the successor is ready), then
// closes its listeners and exits. The successor takes the N listeners by
// name, and so on, b.N times.
//
// The benchmark reports ns/upgrade, the mean of D, beside ns/op, the time
// of one whole cycle as seen from outside (signal, handoff, the old
// generation's exit, the new one's "ready").
//
// The benchmark process is a child subreaper, so each generation orphaned by
// its predecessor's exit becomes its child; it reaps every old generation
// within the loop, sends SIGTERM to the last, and fails if any process is
// left (the shared stdout pipe must reach EOF, and no child may remain).
//
// # Idle memory
//
// BenchmarkIdle/lib=L starts, per iteration, a helper that did
// New + Listen("tcp", "127.0.0.1:0") + Ready and sits idle accepting, and
// the same helper with a plain net.Listen and no library. It reports
// rss-bytes, the difference of their VmRSS, and base-rss-bytes, the plain
// helper's VmRSS.
//
// # Running
//
//	cd bench
//	go test -run '^$' -bench . -benchtime 20x -count 5 . | tee bench.txt
//	go run ./cmd/compare bench.txt
//
// README.md has the numbers measured so far and how to profile a helper.
package bench
