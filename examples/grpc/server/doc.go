// Package server is baton's gRPC example: an echo service whose calls
// survive upgrades, drained with grpcdrain.
//
// # Usage
//
//	grpc [-listen ADDR] [-pid-file PATH] [-drain DURATION]
//
// It serves, on one TCP socket that every generation shares:
//
//   - grpc.health.v1.Health, the standard health service: SERVING for ""
//     and for baton.examples.echo.Echo, NOT_SERVING from the moment a
//     generation begins to drain.
//   - baton.examples.echo.Echo/Echo, unary: google.protobuf.StringValue
//     msg in, "pid=<pid> <msg>" out, so a client sees which generation
//     answered.
//   - baton.examples.echo.Echo/Count, server-streaming: a
//     google.protobuf.Struct {n, from, interval_ms} in, the messages
//     from..n-1 out, one every interval_ms, each a Struct {seq, pid}.
//
// There is no .proto: the service is a hand-written grpc.ServiceDesc over
// protobuf's well-known types, so a client needs only grpc-go (see
// EchoMethod, CountMethod, CountRequest, ParseTick).
//
// SIGHUP upgrades (baton forks a successor that takes the socket over and
// says ready; the PID file then names it). SIGTERM or SIGINT drains and
// stops; the final stop removes the PID file.
//
// # A generation retiring
//
// grpcdrain.Server.Drain: health NOT_SERVING; GOAWAY on every connection,
// so that clients open their next calls on a new connection, which the
// successor accepts; unary calls and streams in progress go on. At -drain,
// a Count still running ends with codes.Unavailable and the trailer
// grpcdrain-resume: <next seq>; its client (grpcdrain.Resumption) opens
// Count again with from set to it and loses no message. Streams shorter
// than -drain finish on the retiring generation.
//
// # Measured
//
// 16 clients calling Echo in a loop (4 of them on a new connection for
// every call) and 8 reading 2-second Count streams through 20 upgrades,
// -drain 1s, every stream on the serving generation at each upgrade
// (go test -run '^$' -bench Drain -benchtime 20x ./server, 2 cores):
//
//	                      unary calls  failed  streams broken  messages lost  mean drain
//	grpcdrain                  51,201       0               0              0      975 ms
//	GracefulStop + Stop        52,905       0             160          7,833    1,001 ms
//
// With the plain drain every stream still open at the deadline is cut
// ("transport is closing", what a crash looks like) and its client cannot
// tell where to go on; with grpcdrain each of those 80 streams ended with
// the status and was resumed on the successor. Unary calls on kept
// connections fail in neither: GOAWAY and grpc-go's transparent retry of
// calls the server never processed make them safe. Calls on new
// connections can: before grpcdrain waited for the connections accepted
// last (AcceptSettle), 2 runs of 3 of TestUpgradesKeepCalls failed 4 calls
// each ("error reading server preface"); GracefulStop alone has that
// window too, which this run of the plain drain did not hit.
package server
