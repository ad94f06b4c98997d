// Package server is baton's WebSocket example: an echo server whose
// WebSocket connections survive upgrades. GET /echo upgrades to a
// WebSocket that answers each message M with "M pid=PID", PID being the
// process that answered; SIGHUP upgrades the server, SIGTERM stops it.
//
// # Try it
//
//	cd examples/websocket && go build -o /tmp/wsecho . && /tmp/wsecho -pid-file /tmp/wsecho.pid &
//	websocat ws://127.0.0.1:8080/echo     # or any WebSocket client; type lines
//	kill -HUP $(cat /tmp/wsecho.pid)      # the answers' pid changes, the connection stays
//	kill -TERM $(cat /tmp/wsecho.pid)     # the client gets close 1001
//
// make ws-soak runs 1,000 connections through 50 upgrades and counts
// every message.
//
// # Handing a WebSocket over
//
// When a successor is ready (Upgrader.Exit is closed), every connection
// of this generation:
//
//  1. finishes the message it is answering: one goroutine reads and
//     writes each connection, so no answer is ever half written;
//  2. stops reading at the next message boundary. Frames are read
//     straight from the socket with github.com/gobwas/ws's frame-level
//     calls, never through a buffer, so every byte the client sent that
//     was not acted on is still in the kernel's receive buffer. A read
//     blocked in the kernel is interrupted with a deadline; if it had
//     begun a message, it reads on until the message is answered;
//  3. calls Upgrader.HandOver with its state: how many messages it
//     answered (the application's state), and any bytes read from the
//     socket before the first frame was parsed (net/http's read-ahead
//     after the upgrade request), which must travel since the kernel no
//     longer has them;
//  4. on success closes only its own descriptor: the socket is the
//     successor's, and writing a close frame now would corrupt its stream;
//     on failure (no successor: the server is stopping) it still owns the
//     connection and closes it properly, with a close frame (1001).
//
// The successor takes the connections from Upgrader.Handed and goes on
// reading where its predecessor stopped: no new HTTP handshake, no lost or
// repeated message, and the client sees nothing but a new pid in the
// answers. No extension (permessage-deflate) is ever negotiated, so no
// compression context needs to travel; the state says so, and a successor
// that finds an extension or a version it does not know closes the
// connection with 1011.
//
// A client's close frame is answered with the same code and the reason
// "answered=N": the number of messages answered on that connection by all
// generations together, which shows the state travelled.
//
// # Limits
//
// A client that stops in the middle of a message holds its connection in
// the retiring generation until the message is complete or -drain runs
// out; the connection is then closed without a close frame. A successor
// queues a bounded number of connections it has not accepted yet and
// refuses more: the retiring generation offers a refused connection
// again, with backoff, for up to HandOverTimeout, then closes it with
// 1001. TLS (wss://) is not shown: a TLS connection's keys and sequence
// numbers would have to travel too (kernel TLS, or the application's own
// record layer), which crypto/tls does not expose.
//
// # Why gobwas/ws
//
// A successor must resume a WebSocket on a bare net.Conn, without a
// handshake, and a predecessor must know that nothing of the next frame
// was consumed. gobwas/ws reads and writes single frames on any
// io.Reader and io.Writer and keeps no buffer of its own.
// gorilla/websocket and coder/websocket can only make a server-side
// connection through an HTTP handshake, and both read ahead through a
// buffer they do not expose.
package server
