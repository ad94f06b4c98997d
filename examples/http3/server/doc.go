// Package server is baton's HTTP/3 example: a server on QUIC whose
// connections survive upgrades, routed by quicroute.
//
// # Usage
//
//	http3 [-listen ADDR] [-pid-file PATH] [-drain DURATION]
//	      [-tls-cert FILE -tls-key FILE] [-route=false]
//
// It serves HTTP/3 only, on one UDP socket that every generation shares.
// GET / answers "pid=<pid>\n", the pid of the generation that served the
// request; ?delay=DURATION first sleeps that long (a slow request, to
// cross an upgrade).
//
// Without -tls-cert and -tls-key each generation makes a self-signed
// certificate for localhost and 127.0.0.1: clients must skip verification
// (curl --http3-only -k), and one that pins a certificate fails after an
// upgrade. TLS sessions resume across generations either way: the session
// ticket keys travel with the generation state (TLSSessionTickets).
//
// SIGHUP upgrades (baton forks a successor that takes the socket over and
// says ready; the PID file then names it). SIGTERM or SIGINT drains and
// stops; the final stop removes the PID file.
//
// # A generation retiring
//
// With routing (the default), each generation issues connection IDs that
// name it; once a successor serves, the retiring generation stops reading
// the socket, and the successor relays it every datagram of its
// connections over baton's generation link; the retiring one answers from
// its own copy of the socket. It finishes the handshakes under way, sends
// HTTP/3 GOAWAY, lets requests in progress finish, and exits once its
// clients have closed their connections (with H3_NO_ERROR: a client
// closes a connection after GOAWAY once its requests are done, and opens
// the next on the successor), or at -drain, closing what is left with
// H3_NO_ERROR. See quicroute.
//
// -route=false is a quic-go server written on baton today: random
// connection IDs, every generation reading the shared socket, the
// retiring one calling http3.Server.Shutdown, quic-go's default keys.
// Each datagram then goes to whichever generation reads first, and a
// connection whose datagrams keep reaching the other one ends by an idle
// timeout.
//
// # Measured
//
// 32 clients, each on its own long-lived QUIC connection, requests in a
// loop (a quarter of them ?delay=100ms, so that requests are in flight at
// every upgrade), through 20 upgrades, -drain 5s, clients' idle timeout
// 5 s (go test -run '^$' -bench Upgrades -benchtime 20x ./server, 2
// cores):
//
//	              requests  failed  handshakes  idle timeouts  resets  mean drain  p99 steady  p99 upgrades  relayed
//	-route=true      7,435       0         672              0       0       92 ms      3.4 ms       37.8 ms    1,405
//	-route=false    44,900     320         988            318       0    5,001 ms      1.8 ms      844.6 ms        0
//
// With routing every one of the 672 connections (32 per generation: each
// client reconnects once per upgrade, after GOAWAY) ended with
// H3_NO_ERROR and every drain finished well before its deadline. Without,
// 318 connections died of idle timeouts, each failing the request it
// carried (2 more requests failed otherwise), and every drain ran to its
// deadline, its clients' datagrams read by the successor about half the
// time. p99 is of the fast requests, by whether they started in an
// upgrade (SIGHUP until every client was answered by the successor, which
// includes each client's new handshake) or between. The steady-state cost
// of routing is the Router's hop: every datagram goes through one
// goroutine and a queue, and quic-go reads one datagram per call instead
// of in batches (recvmmsg) as it does on a bare *net.UDPConn. The
// latencies vary from run to run on a shared machine: earlier runs
// measured 4.9 and 37.0 ms, and 15.9 and 162.7 ms, with routing; 3.4 and
// 592.5 ms, and 7.5 and 849 ms, without.
package server
