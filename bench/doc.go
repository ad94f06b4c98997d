// Package bench compares baton with its peers on what a zero-downtime
// upgrader adds to a server: requests lost across upgrades under load, the
// time of one handoff and how it grows with the number of sockets, request
// latency around upgrades, and memory. The peers are
// github.com/cloudflare/tableflip (descriptors inherited across exec) and
// an SO_REUSEPORT re-bind handoff written here (what rs/seamless and many
// hand-rolled servers do). It is its own module so that tableflip never
// becomes a dependency of baton.
//
// Everything lives in the tests and in cmd/results, which runs them and
// writes docs/RESULTS.md ("make results"); this file only tells the story.
// README.md has the details and the commands.
//
// # Helpers
//
// Every benchmark runs real processes: the test binary re-executed as a
// helper (TestMain dispatches on the BENCH_HELPER variable, which stays set
// so that every successor is the helper again and never the test suite).
// All generations write lines to one pipe ("ready pid=P", "upgraded pid=P
// ns=D"), which the benchmark reads. The benchmark process is a child
// subreaper, so each generation orphaned by its predecessor's exit becomes
// its child; it reaps every old generation, stops the last with SIGTERM,
// and fails if any process is left (the shared pipe must reach EOF, and no
// child may remain). A helper exits by itself if the benchmark process
// disappears. All traffic is on 127.0.0.1.
//
// # Upgrades under load
//
// BenchmarkPausingClients/drain=D/lib=L does the same with keep-alive
// clients that POST and pause up to twice httpdrain's default IdleGrace
// between requests (loadgen's pausing mode), and counts the connections
// they had to open again.
//
// BenchmarkUpgradeUnderLoad/drain=D/lib=L upgrades an HTTP helper b.N times
// (-benchtime 100x: 100 upgrades) under load from internal/loadgen: 16
// clients that never retry in each of two modes at once, fresh (a
// connection per request) and keep-alive, and one slow request in flight
// across each upgrade. The server is the same for every L — one listener,
// net/http, pid=<pid> in the body, delay=<d> honoured — and only the
// handoff differs:
//
//   - baton: Upgrade passes the listening socket to the successor.
//   - tableflip: Upgrade passes it at exec.
//   - reuseport: the successor binds the same address with SO_REUSEPORT
//     and says ready on a pipe; the old generation then closes its listener,
//     which resets the connections left in its own accept queue.
//
// Once the successor is ready the old generation drains with D: httpdrain
// (package baton/httpdrain, which loses no request of its own and ends in
// http.Server.Shutdown; its IdleGrace raised to 5 s so that clients
// starved of CPU on a busy machine are not closed as idle) or shutdown
// (http.Server.Shutdown alone, which drops some requests by itself). The benchmark sends SIGHUP, waits for
// "upgraded" from the old generation and "ready" from the new, and reaps
// the old one while the load goes on; before the next SIGHUP it waits for
// the previous generation to be gone (tableflip refuses to upgrade before
// that). It reports the requests and failures of each mode (by class),
// upgrades, the mean handoff, and the p50 and p99 latency of requests
// started in the warmup (steady) and between an upgrade's start and 500 ms
// after its end (near). Failed requests are the measurement: they are
// logged, not failures of the benchmark.
//
// # Handoff
//
// BenchmarkHandoff/lib=L/sockets=N times one handoff of N listening TCP
// sockets, N = 1, 10, 100, 1,000, 10,000, baton against tableflip.
// Generation 1 opens N listeners on 127.0.0.1:0 and registers each under
// its own name, accepts on all of them, calls Ready, waits for its
// predecessor to be gone and prints "ready". On SIGHUP it calls Upgrade and
// prints "upgraded pid=P ns=D", D being the time from just before Upgrade
// to its nil return (in both libraries: the successor has taken over every
// socket and called Ready), then closes its listeners and exits; b.N times
// in a chain. It reports ns/upgrade, the mean of D, beside ns/op, a whole
// cycle seen from outside, and fds/socket: how many of a ready
// generation's descriptors refer to its N sockets, per socket.
//
// A baton process needs about N descriptors (it passes on the listeners'
// own, without copies), a tableflip one
// 2N (3N while it starts a successor). TestMain raises RLIMIT_NOFILE to
// what 10,000 sockets need when it may (CAP_SYS_RESOURCE), or else the
// soft limit to the hard one; a size that does not fit a library is
// skipped with a "SKIP" line on stderr, and the largest multiple of 1,000
// that fits both is measured as well.
//
// # Memory
//
// BenchmarkIdle/lib=L reports the VmRSS of an idle helper that did New +
// Listen + Ready (base-rss-bytes: the same helper with a plain net.Listen;
// rss-bytes: the difference). BenchmarkIdleMaster builds cmd/baton and
// reports the VmRSS of an idle "baton run" master with one worker
// (master-rss-bytes) and of that worker (worker-rss-bytes).
//
// # Running
//
//	make results                         # from the repository's root
//	cd bench && go test -run '^$' -bench . -benchtime 20x .
//	go run ./cmd/compare bench.txt       # baton/tableflip ratios of a run
package bench
