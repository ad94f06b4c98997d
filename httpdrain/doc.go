// Package httpdrain serves a [net/http.Server] and drains it without failing
// a single request, so that a server handing its listening sockets to a
// successor can step down while clients that never retry see no error, both
// those that open a connection per request and those that keep connections
// alive.
//
// # Use
//
//	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
//	hs := httpdrain.New(srv, httpdrain.Options{})
//	go hs.Serve(ln) // ln is shared with the other generation
//	...             // the successor is ready
//	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
//	defer cancel()
//	err := hs.Drain(ctx)
//
// [New] takes over srv.Handler and srv.ConnState (chaining the previous
// ConnState hook), so it must be called before srv serves anything. Serve
// through [Server.Serve], never srv.Serve, ListenAndServe or their TLS forms:
// Drain must know every listener. For TLS, pass a listener made with
// [crypto/tls.NewListener], with "h2" in its NextProtos for HTTP/2.
//
// # Why plain Shutdown is not enough
//
// [net/http.Server.Shutdown] loses requests in two ways when the listening
// socket lives on in another process:
//
//   - A connection that reads a request after Shutdown began is dropped
//     without a response: conn.serve checks shuttingDown right after
//     readRequest and returns (golang/go#65802, #75591). A client that
//     connected just before the listener was closed, or a keep-alive client
//     whose next request was on its way, gets EOF.
//   - Shutdown closes idle connections at once. The server marks a
//     connection idle before it waits for the next request, so an "idle"
//     connection may already hold a request in its receive buffer; closing a
//     socket with unread data makes the kernel send RST, and the client sees
//     a reset or EOF. SetKeepAlivesEnabled(false) closes idle connections the
//     same way.
//
// Measured with this package's handoff test (16 clients, 20 handoffs, two
// servers on one socket, 2 CPUs, -race): plain Shutdown failed 55 to 109
// requests on fresh connections and 318 to 321 on keep-alive ones (one per
// client per handoff), out of 5,000 to 24,000; Drain failed none.
//
// # How Drain works
//
//  1. It closes the listeners given to Serve: this process's descriptors
//     only. It never calls shutdown(2) on the socket, which would stop every
//     process that shares it. Connections waiting in the shared accept queue
//     are taken by the successor. Drain then waits until every Serve has
//     returned, so no new connection can appear.
//  2. Every request that starts from then on is answered with
//     "Connection: close", so a keep-alive client that sends another request
//     gets its response and then leaves by itself, as HTTP/1.1 intends.
//  3. Every few milliseconds it looks at the connections it tracks through
//     ConnState. Active ones are left to finish. A connection that has been
//     idle, or new without a request, for at least [Options.IdleGrace] is
//     closed, but only if its receive buffer is empty (ioctl FIONREAD): a
//     connection with bytes pending is about to become active and will get a
//     "Connection: close" response instead.
//     With a Handoff, idle plaintext HTTP/1 connections are handed to
//     the successor at once instead (see below).
//     With [Options.ClosePace], these closes are paced (see below).
//  4. When no HTTP/1 connection remains it calls srv.Shutdown, which then
//     has no request left to drop (it sends GOAWAY to HTTP/2 connections,
//     see below). Once no hijacked connection is left and no handler runs,
//     it returns nil. At the deadline of its context it calls srv.Close,
//     closes the hijacked connections passed to [Server.Hijacked], and
//     returns a [*DeadlineError] that says how many it closed.
//
// Closing an idle keep-alive connection always races with a request the
// client may have just sent: bytes still on the wire when the close happens
// are answered with RST. Neither HTTP/1.1 nor any server can avoid that race;
// IdleGrace makes it rare by closing only connections whose client has been
// silent for a while, and FIONREAD closes the window for bytes that have
// already arrived. Clients that send requests back to back never see it: they
// get "Connection: close".
//
// # Handing connections to the successor
//
// With [Options.Handoff] set (a *baton.Upgrader is one), Drain does better
// than close idle keep-alive connections: it passes them, socket and all,
// to the successor, whose clients then never see the upgrade, and the old
// generation exits as soon as its requests in flight are answered, with no
// IdleGrace wait. The successor serves what it receives with its own
// Server, through the same Serve, as if it had accepted it (ConnState,
// timeouts, limits and its own drain apply):
//
//	handed, err := upg.Handed(httpdrain.DefaultHandoffName) // before Ready
//	hs := httpdrain.New(srv, httpdrain.Options{Handoff: upg})
//	go hs.Serve(ln)
//	go hs.Serve(handed)
//
// Only plaintext HTTP/1 connections travel, and only when not a byte of
// their next request has been consumed, since the successor must read it
// from the socket. net/http reads ahead, so Serve wraps each connection
// and watches its reads. net/http reads a connection only through one
// bufio.Reader, which moves unread bytes to the front of its buffer before
// it reads more; a Read into the very start of that buffer (found by the
// connection's first Read) while ConnState says idle therefore has nothing
// buffered behind it, nor does the first Read of a new connection. During
// a drain such a Read is not even made: the connection is handed over at
// once. One already blocked when the drain begins is woken with a read
// deadline in the past; if it returns nothing, the connection is handed
// over, and bytes that wait in the kernel go with the socket, unread. If
// it returns a request, that request is answered here, and the connection
// is handed over after it, when net/http reads again. A connection whose
// client pipelines (a second request already read) is answered with
// "Connection: close" and drained as without a Handoff. net/http's
// background read during a handler would take the first byte of a fast
// client's next request; with a Handoff it only watches for the client's
// close (MSG_PEEK) and leaves that byte in the socket.
//
// HandOver closes this process's descriptor once the successor owns the
// connection; net/http then sees EOF and forgets it without writing a
// byte. If a HandOver fails (no successor, it refused, the link broke),
// the connection is still ours, and from then on the drain goes on as
// without a Handoff: "Connection: close" and the idle sweep. TLS and
// HTTP/2 connections always do. With a Handoff, ConnState hooks and
// handlers see plaintext connections wrapped; the wrapper's NetConn method
// returns the connection as accepted.
//
// # Long responses, and paced closes
//
// Some connections can be neither handed over nor left to finish soon: a
// response that runs on (server-sent events, a chunked feed, long
// polling), a TLS or HTTP/2 connection, a hijacked one. A handler learns
// that its response must end through [WrapUp] on its request's context:
// it finishes the response cleanly and returns, and the client sees a
// complete body instead of a connection cut at the deadline.
//
// Without [Options.ClosePace] every such connection is asked to end as the
// drain begins: every running handler's WrapUp is closed, every
// connection registered with [Server.HijackedWithEnd] has its end func
// called, idle connections are closed once past IdleGrace. Their clients
// then all come back at once, to the successor: a reconnect storm when a
// generation held thousands. With a ClosePace the drain ends them one at
// a time, each turn at least ClosePace after the last: first the idle
// connection that has waited longest, then the response that has run
// longest (a handler that began before the drain), then the hijacked
// connection registered first (its end func, or Close for one passed to
// Hijacked). A request that begins during the drain is on a connection
// that leaves after it, so its WrapUp is closed at once. The deadline ends
// whatever is left at once, and closes every WrapUp too; an application
// that must stop now (a newer generation found too many draining)
// cancels Drain's context. Drain logs how many connections it ended at a
// pace, and over how long.
//
// HTTP/2 connections are not paced: once no HTTP/1 connection remains
// and every running response has had its turn, Shutdown sends GOAWAY to
// all of them at once (GOAWAY is graceful: clients resend what was not
// processed).
//
// # HTTP/2
//
// An HTTP/2 connection negotiated with TLS ALPN ("h2") is never closed by the
// idle sweep: FIONREAD says little about a connection whose frames are read
// eagerly. A response with "Connection: close" makes net/http send GOAWAY on
// that connection, and once no HTTP/1 connection remains Drain calls
// srv.Shutdown, which sends GOAWAY to the rest and waits for their streams.
// GOAWAY tells the client which streams were not processed, so it can resend
// them safely. net/http closes such a connection up to a second after its
// GOAWAY, to let the client stop sending first, so an idle HTTP/2
// connection adds about a second to a drain. Unencrypted HTTP/2 (http.Protocols.SetUnencryptedHTTP2) cannot
// be told apart from HTTP/1 through ConnState; such connections are closed
// by the idle sweep like HTTP/1 ones.
//
// # WebSockets and other hijacked connections
//
// net/http forgets a connection once a handler hijacks it, and so would
// Drain. A handler that keeps a hijacked connection should pass it to
// [Server.Hijacked] before it returns, watch [Server.Draining] to say goodbye
// in its own protocol, and call the returned done func when the connection is
// closed. Drain waits for those connections and closes them at its deadline.
// [Server.HijackedWithEnd] takes an end func as well, which the drain calls
// at the connection's turn (see above), so that the owner ends it at a
// message boundary: a WebSocket close frame rather than a cut.
// Drain also waits for every handler to return, which closes the gap between
// Hijack and Hijacked.
//
// # Unix listeners
//
// Closing a [*net.UnixListener] removes its socket file by default, even
// though another process still serves on it. Call SetUnlinkOnClose(false) on
// every UnixListener that is shared with another generation before passing
// it to Serve; httpdrain does not change the listener.
//
// # Platforms
//
// The FIONREAD check works on Linux (SIOCINQ) and on Darwin and the BSDs
// (FIONREAD). Elsewhere, and for connections that do not expose a file
// descriptor, an idle connection is closed after IdleGrace without the check.
// TLS connections are checked on the connection beneath them; a TLS handshake
// that takes longer than IdleGrace (a very slow client) may be cut, so set
// IdleGrace above the worst round trip you serve.
package httpdrain
