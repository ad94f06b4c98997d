// Package grpcdrain drains a gRPC server (google.golang.org/grpc) when its
// generation retires, so that an upgrade with baton fails no call.
//
// # Why a package
//
// grpc.Server.GracefulStop does most of the work: it closes the listener
// (this process's copy only: the successor accepts on the same socket),
// sends GOAWAY on every connection, so that clients open their next calls
// on a new connection (to the successor), and waits for the calls in
// progress. But it waits for ever: a server-streaming call that lasts an
// hour holds the old generation for an hour (grpc-go#5930, #1355). The
// usual advice, a timer that falls back to Stop, cuts every stream still
// open at the deadline: its client sees codes.Unavailable ("transport is
// closing"), exactly what a crash looks like, and cannot tell where to
// carry on. Server adds the missing half:
//
//   - As the drain begins, the health service (grpc.health.v1, from
//     google.golang.org/grpc/health) reports NOT_SERVING for every service,
//     so a load balancer or a watcher stops sending here.
//   - It stops accepting, and waits (up to AcceptSettle) for grpc-go to
//     take in the connections accepted last: GracefulStop closes, without
//     a byte, a connection whose serving goroutine had not started yet,
//     and its client fails the calls it queued ("error reading server
//     preface"; measured here with clients that connect for every call).
//     Then GracefulStop: GOAWAY on every connection.
//   - Unary calls and streams in progress go on and finish.
//   - At the deadline (Drain's context ends, or Options.Hurry is closed)
//     every call still running is told to wrap up: [WrapUp] on its context
//     is closed. Its handler ends the call with [End], the documented
//     status — codes.Unavailable with the trailer [ResumeKey] naming where
//     to resume — and a client that sees it ([Resumption]) opens the call
//     again on the successor from that point, losing nothing.
//   - Only once those handlers have returned (and their status was written:
//     GracefulStop closes a connection only after its last frames), or
//     after Options.Grace, is Stop called.
//
// # Wiring
//
// The calls are registered by interceptors, so the grpc.Server must be
// made by [NewServer]. With baton:
//
//	upg, _ := baton.New(baton.Options{PIDFile: pidFile})
//	ln, _ := upg.Listen("tcp", addr)
//	srv := grpcdrain.NewServer(grpcdrain.Options{Hurry: upg.Hurry()})
//	pb.RegisterEchoServer(srv, echo{})
//	upg.HandleSignals()
//	go srv.Serve(ln)
//	upg.Ready()
//	<-upg.Exit()
//	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
//	defer cancel()
//	srv.Drain(ctx)
//	upg.Stop()
//
// # The client's side
//
// Calls the server never processed — sent as the GOAWAY crossed them —
// are retried by grpc-go on a new connection by itself (transparent retry,
// part of the protocol, kept even with grpc.WithDisableRetry), so a unary
// call is never lost to a drain. A stream ended at the deadline returns an
// error for which [Resumption] reports the resume point; anything else
// (a cut connection, a crash) does not.
//
// # Limits
//
// A handler that ignores WrapUp is cut by Stop after Options.Grace, as
// with the plain timer; so is a health Watch stream whose client did not
// leave on GOAWAY (grpc-go's own health checking does). Knowing when
// grpc-go has taken a connection in takes a stats.Handler (TagConn), so
// NewServer installs one; grpc-go then reports every call's events to it,
// a small cost per call.
package grpcdrain
