package server

import (
	"context"
	"fmt"
	"math"
	"os"
	"strconv"
	"time"

	"github.com/batonhq/baton/grpcdrain"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ServiceName is the echo service's name, in the health service too.
const ServiceName = "baton.examples.echo.Echo"

// The full method names, for grpc.ClientConn.Invoke and NewStream: the
// service has no .proto, its messages are protobuf's well-known types.
const (
	EchoMethod  = "/" + ServiceName + "/Echo"
	CountMethod = "/" + ServiceName + "/Count"
)

// CountDesc describes Count to grpc.ClientConn.NewStream.
var CountDesc = &grpc.StreamDesc{StreamName: "Count", ServerStreams: true}

// Bounds of a Count request, so that one call cannot hold a generation
// longer than a demo needs: MaxCount messages at most, MaxInterval apart
// at most. MinInterval keeps a stream from being a busy loop.
const (
	MaxCount    = 1 << 20
	MinInterval = time.Millisecond
	MaxInterval = time.Minute
)

// echoDesc is what protoc would generate for
//
//	service Echo {
//	  rpc Echo(google.protobuf.StringValue) returns (google.protobuf.StringValue);
//	  rpc Count(google.protobuf.Struct) returns (stream google.protobuf.Struct);
//	}
var echoDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Echo", Handler: echoHandler}},
	Streams:     []grpc.StreamDesc{{StreamName: "Count", Handler: countHandler, ServerStreams: true}},
}

// echoHandler answers Echo(msg) with "pid=<pid> <msg>": the client sees
// which generation served it.
func echoHandler(_ any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.StringValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	h := func(_ context.Context, req any) (any, error) {
		return wrapperspb.String(fmt.Sprintf("pid=%d %s", os.Getpid(), req.(*wrapperspb.StringValue).Value)), nil
	}
	if interceptor == nil {
		return h(ctx, in)
	}
	return interceptor(ctx, in, &grpc.UnaryServerInfo{FullMethod: EchoMethod}, h)
}

// CountRequest is Count's request: the messages from..n-1, one every
// interval.
func CountRequest(n, from int, interval time.Duration) *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"n":           structpb.NewNumberValue(float64(n)),
		"from":        structpb.NewNumberValue(float64(from)),
		"interval_ms": structpb.NewNumberValue(float64(interval.Milliseconds())),
	}}
}

// parseCount reads a CountRequest, checking its bounds.
func parseCount(req *structpb.Struct) (n, from int, interval time.Duration, err error) {
	num := func(k string) (int, error) {
		v, ok := req.GetFields()[k].GetKind().(*structpb.Value_NumberValue)
		if !ok {
			return 0, fmt.Errorf("%s: want a number", k)
		}
		f := v.NumberValue
		if f != math.Trunc(f) || f < 0 || f > MaxCount {
			return 0, fmt.Errorf("%s=%v: want a whole number from 0 to %d", k, f, MaxCount)
		}
		return int(f), nil
	}
	if n, err = num("n"); err != nil {
		return
	}
	if from, err = num("from"); err != nil {
		return
	}
	ms, err := num("interval_ms")
	if err != nil {
		return
	}
	interval = time.Duration(ms) * time.Millisecond
	if interval < MinInterval || interval > MaxInterval {
		err = fmt.Errorf("interval_ms=%d: want %v to %v", ms, MinInterval, MaxInterval)
	}
	return
}

// Tick is one message of Count.
type Tick struct {
	Seq int // its sequence number, from the request's from up to n-1
	PID int // the generation that sent it
}

func (t Tick) message() *structpb.Struct {
	return &structpb.Struct{Fields: map[string]*structpb.Value{
		"seq": structpb.NewNumberValue(float64(t.Seq)),
		"pid": structpb.NewNumberValue(float64(t.PID)),
	}}
}

// ParseTick reads a message of Count.
func ParseTick(m *structpb.Struct) (Tick, error) {
	seq, ok1 := m.GetFields()["seq"].GetKind().(*structpb.Value_NumberValue)
	pid, ok2 := m.GetFields()["pid"].GetKind().(*structpb.Value_NumberValue)
	if !ok1 || !ok2 {
		return Tick{}, fmt.Errorf("count message %v: want numbers seq and pid", m)
	}
	return Tick{Seq: int(seq.NumberValue), PID: int(pid.NumberValue)}, nil
}

// countHandler streams Count: the messages from..n-1, one every interval,
// each with its sequence number and our pid. When the drain reaches its
// deadline (grpcdrain.WrapUp) it ends the call with grpcdrain.End naming
// the next sequence number: the client opens Count again on the successor
// with from set to it, and loses nothing. Nothing is written after the
// last message it sent, so the resume point is exact.
func countHandler(_ any, ss grpc.ServerStream) error {
	req := new(structpb.Struct)
	if err := ss.RecvMsg(req); err != nil {
		return err
	}
	n, from, interval, err := parseCount(req)
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	ctx := ss.Context()
	t := time.NewTicker(interval)
	defer t.Stop()
	pid := os.Getpid()
	for seq := from; seq < n; seq++ {
		if seq > from {
			select {
			case <-grpcdrain.WrapUp(ctx):
				return grpcdrain.End(ctx, strconv.Itoa(seq))
			case <-ctx.Done():
				return status.FromContextError(ctx.Err()).Err()
			case <-t.C:
			}
		}
		if err := ss.SendMsg(Tick{Seq: seq, PID: pid}.message()); err != nil {
			return err
		}
	}
	return nil
}
