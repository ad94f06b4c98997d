// Package loadgen drives HTTP load at a server while the server upgrades
// itself, and counts every request that did not come back whole.
//
// It knows a URL and an Upgrade callback, nothing about how the server is
// run: `baton demo` points it at the demo server, `baton verify` at a user's
// own. The question it answers is the one baton exists for: across N
// upgrades under load, did any client see a refused connection, a reset, a
// truncated response, a timeout or an error status?
//
// # A run
//
//	warmup ──┬─ slow ─ Upgrade ─ settle ─┬─ slow ─ Upgrade ─ settle ─ … ─ stop
//	         └─ steady-state sample      └─ "near upgrade": start … end+500ms
//
// Clients start at once, Clients of them per Mode, and send GET requests back
// to back until the run stops. After Warmup (a server that gave no response
// at all by then is an error, ErrNoResponse) each round starts one slow
// request with delay=<SlowDelay> in its query, gives it a moment to reach the
// server's handler, calls Upgrade, waits for the slow request to finish and
// for Settle, and goes again. Load keeps running through the last Settle and
// then stops gracefully: clients finish the request in hand and send no more.
//
// Two modes run side by side because they break in different places. Fresh
// clients dial for every request and send Connection: close; they find a
// listener that was closed or re-bound (refused) and a connection dropped
// from an accept queue (reset). KeepAlive clients reuse one connection until
// a response says it will close; they find a server that closes idle
// connections while a request is on its way (eof, reset). A slow request
// finds a drain that did not wait for in-flight work.
//
// # Counting
//
// The client never retries; that is why it is not net/http's Transport,
// which silently retries idempotent requests on reused connections and
// would hide exactly the keep-alive race this package is looking for. It is
// a plain net.Dialer, bufio and http.ReadResponse. A request succeeds when
// it gets status 200 and as many body bytes as Content-Length (or the
// chunked framing) promised, within RequestTimeout. Every other outcome is a
// failure of one class:
//
//	refused  ECONNREFUSED on dial: no listener
//	reset    ECONNRESET or EPIPE anywhere: the server aborted the connection
//	eof      the connection ended before the full response, or a short body
//	timeout  no full response within RequestTimeout
//	non-200  a whole response with another status (counted per status)
//	other    anything else, such as a malformed response
//
// and the first ExamplesPerClass error strings of each class are kept, per
// mode. A failure on a reused connection says which request on the
// connection it was ("request 7 on connection: read response: EOF").
//
// After a failure a client pauses 5ms before its next request, so that a
// refusing server does not turn the clients into busy loops and the counts
// say for how long the server was broken rather than how fast the CPU is.
//
// If the first KiB of a body holds pid=<n> (the demo server writes the pid
// that served the request), the Report counts requests per pid: across N upgrades a server
// that really replaced itself shows N+1 pids.
//
// # Bounds
//
// Every loop ends by itself: Upgrades bounds the rounds, MaxRequests the
// load requests, RequestTimeout each request, and the context everything —
// when it is done, Run stops at once, drops the requests in flight without
// counting them, and returns a Report marked Stopped. Upgrade is the one
// call loadgen cannot bound; it must honour its context.
//
// # Reading the Report
//
// Report.Failed is true if any request, slow request or upgrade failed.
// Latency is measured on successful requests only: Steady covers those
// started during warmup, NearUpgrade those started between an upgrade's
// start and 500ms after its end, where a handover that stalls accept or
// drains badly shows up even when nothing fails. Report.WriteText prints a
// table and a verdict line ("PASS: 0 failed requests across 10 upgrades
// (12345 requests)"); the struct marshals to JSON as it is.
//
// # Pitfalls
//
//   - Fresh mode opens thousands of connections a second. The server
//     closes first (it was asked to), so TIME_WAIT lands on the server's
//     side and the client's ephemeral ports are not exhausted; a server
//     that ignores Connection: close gets a client-side close instead.
//   - A SlowDelay shorter than an upgrade proves little: the slow request
//     ends before the old generation starts draining. SlowReport.Spanning
//     counts the slow requests that were still in flight when Upgrade
//     returned.
//   - The server must treat delay=<Go duration> (such as delay=1s) as "wait
//     that long, then answer 200"; one that ignores it still passes, with a
//     fast "slow" request.
//
// # Platforms
//
// Everything but IsTerminal is portable. IsTerminal asks the terminal
// driver (TCGETS on Linux, TIOCGETA on macOS) and says false elsewhere,
// which gives plain progress lines.
package loadgen
