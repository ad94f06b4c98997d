//go:build unix

package httpdrain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Handoff test parameters: enough handoffs under enough load to make plain
// Shutdown lose requests most of the time, small enough for ~5 s per run
// under -race on two cores.
const (
	handoffClients = 16
	handoffs       = 20
	slowDelay      = 100 * time.Millisecond // the slow request drains across this
	slowChunks     = 10
	slowChunk      = 4 << 10
	overlap        = 20 * time.Millisecond // both generations accept before the drain
	maxRequests    = 1_000_000             // per client, a bound on the loop
)

// dupListener returns a second listener on the same socket as l, as a new
// generation would get it through SCM_RIGHTS: one socket, one accept queue,
// two descriptors.
func dupListener(t *testing.T, l net.Listener) net.Listener {
	t.Helper()
	// SyscallConn, not l.File(): File would dup through Fd and switch the
	// shared socket to blocking mode for every holder.
	rc, err := l.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatalf("SyscallConn: %v", err)
	}
	var fd int
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		t.Fatalf("F_DUPFD_CLOEXEC: %v, %v", err, derr)
	}
	// NewFile on a nonblocking descriptor leaves it nonblocking, and Fd
	// (called by FileListener) then does not change the mode.
	f := os.NewFile(uintptr(fd), "dup")
	nl, err := net.FileListener(f)
	f.Close()
	if err != nil {
		t.Fatalf("FileListener: %v", err)
	}
	var fl int
	rc.Control(func(s uintptr) { fl, derr = unix.FcntlInt(s, unix.F_GETFL, 0) })
	if derr != nil || fl&unix.O_NONBLOCK == 0 {
		t.Fatalf("after dup, F_GETFL = %#x, %v; want O_NONBLOCK still set on the shared socket", fl, derr)
	}
	return nl
}

// generation is one server process of the handoff, in miniature.
type generation struct {
	id        int
	ln        net.Listener
	srv       *http.Server
	hs        *Server // nil when drained the naive way
	serveErr  chan error
	succeeded atomic.Bool  // its successor is serving
	served    atomic.Int64 // requests answered
	overlap   atomic.Int64 // of which after the successor started
}

// startGeneration serves l with a new generation. slowStarted receives a
// value when a slow request starts.
func startGeneration(id int, l net.Listener, naive bool, slowStarted chan<- int) *generation {
	g := &generation{id: id, ln: l, serveErr: make(chan error, 1)}
	chunk := []byte(strings.Repeat(strconv.Itoa(id%10), slowChunk))
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Gen", strconv.Itoa(id))
		if g.succeeded.Load() {
			g.overlap.Add(1)
		}
		g.served.Add(1)
		d, err := time.ParseDuration(r.URL.Query().Get("delay"))
		if err != nil {
			io.WriteString(w, "gen "+strconv.Itoa(id))
			return
		}
		// A slow response streamed across the drain: it must arrive
		// whole.
		w.Header().Set("Content-Length", strconv.Itoa(slowChunks*slowChunk))
		w.WriteHeader(http.StatusOK)
		select {
		case slowStarted <- id:
		default:
		}
		for range slowChunks {
			time.Sleep(d / slowChunks)
			w.Write(chunk)
			w.(http.Flusher).Flush()
		}
	})
	g.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	if naive {
		go func() { g.serveErr <- g.srv.Serve(l) }()
	} else {
		g.hs = New(g.srv, Options{})
		go func() { g.serveErr <- g.hs.Serve(l) }()
	}
	return g
}

// drain drains g the way the test asks.
func (g *generation) drain(ctx context.Context) error {
	if g.hs == nil {
		return g.srv.Shutdown(ctx) // the naive way
	}
	return g.hs.Drain(ctx)
}

// handoffResult is what one run of handoffs measured.
type handoffResult struct {
	ok       int64
	failed   failures
	gens     []*generation
	slowErrs []error // one per handoff that went wrong
	errs     []error // drain and serve errors

	// For each handoff: requests the old generation answered after the new
	// one started, and requests the new one answered before the old one's
	// drain returned. Both sides served the same socket.
	oldSide, newSide []int64
}

// runHandoffs runs handoffs under load from handoffClients clients and
// returns what it measured. naive drains with plain http.Server.Shutdown.
func runHandoffs(t *testing.T, keepAlive, naive bool) *handoffResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	addr := ln.Addr().String()
	res := &handoffResult{}
	slowStarted := make(chan int, 1)
	cur := startGeneration(0, ln, naive, slowStarted)
	ln = nil // from now on, cur.ln
	res.gens = append(res.gens, cur)

	// Clients.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ok atomic.Int64
	runEnd := time.Now().Add(60 * time.Second) // a bound should stop be missed
	for range handoffClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := &testClient{addr: addr, keepAlive: keepAlive, timeout: 5 * time.Second}
			defer c.close()
			for i := 0; i < maxRequests && time.Now().Before(runEnd); i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, _, err := c.get("/"); err != nil {
					res.failed.add(err)
					continue
				}
				ok.Add(1)
			}
		}()
	}
	clientsDone := make(chan struct{})
	go func() { wg.Wait(); close(clientsDone) }()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		select {
		case <-clientsDone:
		case <-time.After(10 * time.Second):
			t.Errorf("clients did not stop within 10s")
		}
	}()

	time.Sleep(50 * time.Millisecond) // warm up: keep-alive connections to gen 0
	for i := 1; i <= handoffs; i++ {
		// A slow request on the old generation, in flight during the
		// drain: start it while the old one is the only one serving.
		type slowResult struct {
			body []byte
			gen  string
			err  error
		}
		slowDone := make(chan slowResult, 1)
		go func() {
			c := &testClient{addr: addr, timeout: 5 * time.Second}
			resp, body, err := c.get("/?delay=" + slowDelay.String())
			r := slowResult{body: body, err: err}
			if resp != nil {
				r.gen = resp.Header.Get("X-Gen")
			}
			slowDone <- r
		}()
		select {
		case <-slowStarted:
		case <-time.After(5 * time.Second):
			t.Fatalf("handoff %d: slow request did not start within 5s", i)
		}

		next := startGeneration(i, dupListener(t, cur.ln), naive, slowStarted)
		res.gens = append(res.gens, next)
		cur.succeeded.Store(true)
		time.Sleep(overlap)

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := cur.drain(ctx); err != nil {
			res.errs = append(res.errs, fmt.Errorf("handoff %d: drain gen %d: %w", i, cur.id, err))
		}
		cancel()
		res.oldSide = append(res.oldSide, cur.overlap.Load())
		res.newSide = append(res.newSide, next.served.Load())
		select {
		case err := <-cur.serveErr:
			if !errors.Is(err, http.ErrServerClosed) {
				res.errs = append(res.errs, fmt.Errorf("handoff %d: Serve of gen %d returned %v, want http.ErrServerClosed", i, cur.id, err))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("handoff %d: Serve of gen %d did not return within 5s of its drain", i, cur.id)
		}
		select {
		case r := <-slowDone:
			want := strings.Repeat(strconv.Itoa(cur.id%10), slowChunks*slowChunk)
			switch {
			case r.err != nil:
				res.slowErrs = append(res.slowErrs, fmt.Errorf("handoff %d: slow request: %w (%d body bytes)", i, r.err, len(r.body)))
			case r.gen != strconv.Itoa(cur.id) || string(r.body) != want:
				res.slowErrs = append(res.slowErrs, fmt.Errorf("handoff %d: slow request answered by gen %q with %d bytes, want gen %d with %d bytes", i, r.gen, len(r.body), cur.id, len(want)))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("handoff %d: slow request did not finish within 5s", i)
		}
		cur = next
	}
	time.Sleep(50 * time.Millisecond) // let the last generation serve alone
	close(stop)
	select {
	case <-clientsDone:
	case <-time.After(10 * time.Second):
		t.Fatalf("clients did not stop within 10s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cur.drain(ctx); err != nil {
		res.errs = append(res.errs, fmt.Errorf("final drain of gen %d: %w", cur.id, err))
	}
	res.ok = ok.Load()
	return res
}

func TestHandoff(t *testing.T) {
	for _, mode := range []struct {
		name      string
		keepAlive bool
	}{
		{"fresh", false},
		{"keep-alive", true},
	} {
		t.Run(mode.name, func(t *testing.T) {
			t.Parallel()
			r := runHandoffs(t, mode.keepAlive, false)
			var oldSide, newSide int64
			for i := range r.oldSide {
				oldSide += r.oldSide[i]
				newSide += r.newSide[i]
			}
			t.Logf("%s, httpdrain: %d handoffs, %d requests served, %d failed (%v); during handoffs the old generations answered %d and the new ones %d",
				mode.name, handoffs, r.ok, r.failed.total(), &r.failed, oldSide, newSide)
			if n := r.failed.total(); n != 0 {
				t.Errorf("httpdrain: %d requests failed, want 0: %v", n, &r.failed)
			}
			for _, err := range r.slowErrs {
				t.Errorf("httpdrain: %v", err)
			}
			for _, err := range r.errs {
				t.Errorf("httpdrain: %v", err)
			}
			if r.ok < 20*handoffs {
				t.Errorf("httpdrain: %d requests served, want at least %d: the load was too light to prove anything", r.ok, 20*handoffs)
			}
			for _, g := range r.gens {
				if g.served.Load() == 0 {
					t.Errorf("httpdrain: generation %d served no request", g.id)
				}
			}
			if oldSide == 0 || newSide == 0 {
				t.Errorf("httpdrain: during handoffs the old generations answered %d requests and the new ones %d; want both > 0", oldSide, newSide)
			}

			// The naive way, for contrast: plain Shutdown. Its losses
			// are racy, so they are reported, not asserted.
			n := runHandoffs(t, mode.keepAlive, true)
			t.Logf("%s, plain Shutdown: %d handoffs, %d requests served, %d failed (%v), %d slow requests went wrong",
				mode.name, handoffs, n.ok, n.failed.total(), &n.failed, len(n.slowErrs))
		})
	}
}
