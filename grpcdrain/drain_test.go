package grpcdrain_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/batonhq/baton/grpcdrain"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// step bounds every wait of these tests; a healthy one takes milliseconds.
const step = 10 * time.Second

// feed is a test service: Ticks streams a counter every tickEvery (ending
// with grpcdrain.End at WrapUp unless the request says to be deaf); Wait
// sleeps the duration it is given.
type feed struct{}

const tickEvery = 5 * time.Millisecond

func (feed) ticks(_ any, ss grpc.ServerStream) error {
	deaf := new(wrapperspb.BoolValue)
	if err := ss.RecvMsg(deaf); err != nil {
		return err
	}
	ctx := ss.Context()
	wrap := grpcdrain.WrapUp(ctx)
	if deaf.Value {
		wrap = nil
	}
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	for n := int64(0); ; n++ {
		if err := ss.SendMsg(wrapperspb.Int64(n)); err != nil {
			return err
		}
		select {
		case <-wrap:
			return grpcdrain.End(ctx, "next")
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (feed) wait(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
	d := new(durationpb.Duration)
	if err := dec(d); err != nil {
		return nil, err
	}
	select {
	case <-time.After(d.AsDuration()):
		return &emptypb.Empty{}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

var feedDesc = grpc.ServiceDesc{
	ServiceName: "grpcdrain.test.Feed",
	HandlerType: (*any)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Wait", Handler: feed{}.wait}},
	Streams:     []grpc.StreamDesc{{StreamName: "Ticks", Handler: feed{}.ticks, ServerStreams: true}},
}

var ticksDesc = &grpc.StreamDesc{StreamName: "Ticks", ServerStreams: true}

// start serves a new Server on loopback and returns a client connection.
func start(t *testing.T, o grpcdrain.Options) (*grpcdrain.Server, *grpc.ClientConn) {
	t.Helper()
	srv := grpcdrain.NewServer(o)
	srv.RegisterService(&feedDesc, feed{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	cc, err := grpc.NewClient(ln.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithDisableRetry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return srv, cc
}

// openTicks opens a Ticks stream and reads its first message, so the
// handler is running when it returns.
func openTicks(t *testing.T, ctx context.Context, cc *grpc.ClientConn, deaf bool) grpc.ClientStream {
	t.Helper()
	cs, err := cc.NewStream(ctx, ticksDesc, "/grpcdrain.test.Feed/Ticks")
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(wrapperspb.Bool(deaf)); err != nil {
		t.Fatal(err)
	}
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := cs.RecvMsg(new(wrapperspb.Int64Value)); err != nil {
		t.Fatalf("first tick: %v", err)
	}
	return cs
}

// drainEnd reads cs to its end and returns the error that ended it.
func drainEnd(cs grpc.ClientStream) error {
	for {
		if err := cs.RecvMsg(new(wrapperspb.Int64Value)); err != nil {
			return err
		}
	}
}

// A unary call in progress when the drain begins finishes; a health
// watcher hears NOT_SERVING first; Drain returns nil once the calls are
// done.
func TestDrainLetsCallsFinish(t *testing.T) {
	srv, cc := start(t, grpcdrain.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	watchCtx, leave := context.WithCancel(ctx)
	defer leave()

	watch, err := healthpb.NewHealthClient(cc).Watch(watchCtx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health before the drain: %v, %v; want SERVING", r, err)
	}

	const slow = 200 * time.Millisecond
	called := make(chan error, 1)
	go func() {
		called <- cc.Invoke(ctx, "/grpcdrain.test.Feed/Wait", durationpb.New(slow), new(emptypb.Empty))
	}()
	// The call is in progress once the server has its stream; a short
	// wait is the only way to see that from outside the handler.
	time.Sleep(50 * time.Millisecond)

	drained := make(chan error, 1)
	began := time.Now()
	go func() { drained <- srv.Drain(ctx) }()

	if r, err := watch.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("health once the drain began: %v, %v; want NOT_SERVING", r, err)
	}
	if err := <-called; err != nil {
		t.Errorf("unary call in progress at the drain: %v; want success", err)
	}
	// The watch stream is still open, and deaf to WrapUp: Drain waits
	// for it until the client leaves (grpc-go's own health checking
	// leaves on GOAWAY).
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v while a watch stream was open", err)
	case <-time.After(50 * time.Millisecond):
	}
	leave()
	select {
	case err := <-drained:
		if err != nil {
			t.Errorf("Drain: %v; want nil", err)
		}
	case <-time.After(step):
		t.Fatal("Drain did not return")
	}
	if d := time.Since(began); d < slow-60*time.Millisecond {
		t.Errorf("Drain returned after %v, before the call in progress could finish", d)
	}
}

// At the deadline a stream that watches WrapUp ends with End's status and
// trailer, which Resumption reads; one that does not is cut by Stop after
// the grace, and its client sees no resume point.
func TestDeadlineWrapsUpThenCuts(t *testing.T) {
	const grace = 300 * time.Millisecond
	srv, cc := start(t, grpcdrain.Options{Grace: grace})
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()

	polite := openTicks(t, ctx, cc, false)
	deaf := openTicks(t, ctx, cc, true)

	dctx, dcancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer dcancel()
	began := time.Now()
	err := srv.Drain(dctx)
	took := time.Since(began)
	var de *grpcdrain.DeadlineError
	if !errors.As(err, &de) || !errors.Is(err, context.DeadlineExceeded) || de.WrappedUp != 2 || de.Cut != 1 {
		t.Fatalf("Drain: %v; want a DeadlineError (deadline exceeded) with 2 calls told to wrap up and 1 cut", err)
	}
	if took < grace {
		t.Errorf("Drain took %v; a deaf handler must get the whole grace, %v", took, grace)
	}

	perr := drainEnd(polite)
	if resume, ok := grpcdrain.Resumption(perr, polite.Trailer()); !ok || resume != "next" {
		t.Errorf("polite stream ended with %v, trailer %v: Resumption %q, %v; want \"next\", true", perr, polite.Trailer(), resume, ok)
	}
	derr := drainEnd(deaf)
	if status.Code(derr) != codes.Unavailable {
		t.Errorf("deaf stream ended with %v; want Unavailable (cut)", derr)
	}
	if _, ok := grpcdrain.Resumption(derr, deaf.Trailer()); ok {
		t.Errorf("deaf stream, cut by Stop: Resumption says it was drained (%v)", derr)
	}
}

// Hurry ends the drain as the deadline would, at once.
func TestHurry(t *testing.T) {
	hurry := make(chan struct{})
	srv, cc := start(t, grpcdrain.Options{Hurry: hurry})
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	cs := openTicks(t, ctx, cc, false)
	drained := make(chan error, 1)
	go func() { drained <- srv.Drain(ctx) }()
	close(hurry)
	select {
	case err := <-drained:
		var de *grpcdrain.DeadlineError
		if !errors.Is(err, grpcdrain.ErrHurried) || !errors.As(err, &de) || de.WrappedUp != 1 || de.Cut != 0 {
			t.Errorf("Drain after Hurry: %v; want ErrHurried, 1 call wrapped up, none cut", err)
		}
	case <-time.After(step):
		t.Fatal("Drain did not return after Hurry")
	}
	if _, ok := grpcdrain.Resumption(drainEnd(cs), cs.Trailer()); !ok {
		t.Error("the stream did not end with End's status")
	}
	// A second Drain returns the first one's result.
	if err := srv.Drain(context.Background()); !errors.Is(err, grpcdrain.ErrHurried) {
		t.Errorf("second Drain: %v; want the first one's result", err)
	}
}

func TestResumption(t *testing.T) {
	md := metadata.Pairs(grpcdrain.ResumeKey, "42")
	end := status.Error(codes.Unavailable, "whatever the message")
	for _, tc := range []struct {
		name    string
		err     error
		trailer metadata.MD
		resume  string
		ok      bool
	}{
		{"drained", end, md, "42", true},
		{"empty resume point", end, metadata.Pairs(grpcdrain.ResumeKey, ""), "", true},
		{"cut: no trailer", end, nil, "", false},
		{"success", nil, md, "", false},
		{"EOF", io.EOF, md, "", false},
		{"other code", status.Error(codes.Internal, "x"), md, "", false},
		{"two resume points", end, metadata.Pairs(grpcdrain.ResumeKey, "1", grpcdrain.ResumeKey, "2"), "", false},
	} {
		resume, ok := grpcdrain.Resumption(tc.err, tc.trailer)
		if resume != tc.resume || ok != tc.ok {
			t.Errorf("%s: Resumption(%v, %v) = %q, %v; want %q, %v", tc.name, tc.err, tc.trailer, resume, ok, tc.resume, tc.ok)
		}
	}
}

// WrapUp of a context that is not a call's is nil: never closed.
func TestWrapUpOutsideACall(t *testing.T) {
	if c := grpcdrain.WrapUp(context.Background()); c != nil {
		t.Errorf("WrapUp(Background) = %v; want nil", c)
	}
}

// A connection accepted just before the drain that never says a word (a
// TCP probe) holds the drain at most AcceptSettle: Drain returns, and
// Serve returns nil.
func TestSilentConnectionAtDrain(t *testing.T) {
	srv, cc := start(t, grpcdrain.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), step)
	defer cancel()
	// A call first, so that the listener's address is known to serve.
	if err := cc.Invoke(ctx, "/grpcdrain.test.Feed/Wait", durationpb.New(0), new(emptypb.Empty)); err != nil {
		t.Fatal(err)
	}
	silent, err := net.Dial("tcp", cc.Target())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	began := time.Now()
	if err := srv.Drain(ctx); err != nil {
		t.Errorf("Drain: %v; want nil", err)
	}
	if d := time.Since(began); d > step {
		t.Errorf("Drain took %v", d)
	}
}
