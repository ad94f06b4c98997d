package quicroute

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/proctest"
)

// Every Router here runs in a generation process of its own (the test
// binary re-executed: generationMain), with a real *baton.Upgrader and
// baton's relay between the generations; the clients are in the test
// process and never retry.

// TestRouterKeepsConnections: a connection of generation 1 goes on being
// served by generation 1 after generation 2 took the socket over, its
// datagrams relayed by generation 2's Router; a new connection goes to
// generation 2; generation 1's drain ends with the client closing its
// connection gracefully after GOAWAY.
func TestRouterKeepsConnections(t *testing.T) {
	t.Parallel()
	f, g1 := startFamily(t, 10*time.Second, true)
	old := newClient(t, f.roots)
	want1 := fmt.Sprintf("gen=1 pid=%d", g1.pid)
	if got := old.get(t, g1.url); got != want1 {
		t.Fatalf("GET / on generation 1 = %q, want %q", got, want1)
	}

	// Generation 2 serves; generation 1 holds its drain (envHold) and
	// no longer reads the socket.
	g2 := f.upgrade(g1, 2)
	want2 := fmt.Sprintf("gen=2 pid=%d", g2.pid)

	// Slow requests on the old connection, while a new client opens a
	// connection of its own.
	for range 5 {
		if got := old.get(t, g1.url+"?delay=20ms"); got != want1 {
			t.Fatalf("GET / on the old connection = %q, want %q (its generation)", got, want1)
		}
	}
	fresh := newClient(t, f.roots)
	if got := fresh.get(t, g2.url); got != want2 {
		t.Fatalf("GET / on a new connection = %q, want %q (the newest)", got, want2)
	}
	// The old connection's datagrams all reached generation 2, which
	// relayed them: none was dropped.
	if st := fresh.get(t, g2.url+"stats"); count(t, st, "relayed") == 0 || count(t, st, "relay-dropped") != 0 {
		t.Errorf("generation 2's router: %s; want datagrams relayed and none dropped", st)
	}
	if st := old.get(t, g1.url+"stats"); count(t, st, "received") == 0 {
		t.Errorf("generation 1's router: %s; want datagrams received from generation 2", st)
	}

	// Generation 1 drains: GOAWAY, and the old client closes.
	if err := syscall.Kill(g1.pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	line := f.line("drained gen=1 ")
	if count(t, line, "conns") != 1 || count(t, line, "at-deadline") != 0 || count(t, line, "refused") != 0 ||
		count(t, line, "received") == 0 || count(t, line, "queue-dropped") != 0 {
		t.Fatalf("%q: want 1 connection drained before the deadline, datagrams received from generation 2, none dropped", line)
	}
	closedGracefully(t, old.conn(t, 0))
	if _, err := f.p.Wait(10 * time.Second); err != nil {
		t.Fatalf("generation 1 after its drain: %v", err)
	}
	// The old client's next request goes to generation 2.
	if got := old.get(t, g1.url); got != want2 {
		t.Fatalf("GET / after the drain = %q, want %q", got, want2)
	}
	if st := fresh.get(t, g2.url+"stats"); count(t, st, "queue-dropped") != 0 || count(t, st, "relay-dropped") != 0 {
		t.Errorf("generation 2's router dropped datagrams: %s", st)
	}
}

// TestRouterFinalStop: when Exit closes without a successor, the Router
// goes on reading the socket, which nobody else reads, so that the drain
// hears its clients: a request in flight at SIGTERM completes, and the
// client's close after GOAWAY arrives.
func TestRouterFinalStop(t *testing.T) {
	t.Parallel()
	f, g := startFamily(t, 10*time.Second, false)
	c := newClient(t, f.roots)
	want := fmt.Sprintf("gen=1 pid=%d", g.pid)
	if got := c.get(t, g.url); got != want {
		t.Fatalf("GET / = %q, want %q", got, want)
	}
	// The response is written after SIGTERM, and its ACKs read by the
	// Router during the drain.
	got := make(chan string, 1)
	go func() {
		// t.Fatal belongs to the test's goroutine: report by value.
		got <- fetch(c, g.url+"?delay=300ms")
	}()
	f.line("request gen=1 delay=300ms")
	if err := syscall.Kill(g.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if line := f.line("exiting gen=1 "); proctest.Field(line, "handed-over") != "false" {
		t.Fatalf("%q: want handed-over=false on the final stop", line)
	}
	select {
	case s := <-got:
		if s != want {
			t.Fatalf("the request in flight at SIGTERM: %q, want %q", s, want)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the request in flight at SIGTERM has no answer 20 s later")
	}
	line := f.line("drained gen=1 ")
	if count(t, line, "conns") != 1 || count(t, line, "at-deadline") != 0 ||
		count(t, line, "relayed") != 0 || count(t, line, "router-own") == 0 {
		t.Fatalf("%q: want the one connection drained before the deadline, every datagram the router's own", line)
	}
	closedGracefully(t, c.conn(t, 0))
	if _, err := f.p.Wait(10 * time.Second); err != nil {
		t.Fatalf("generation 1 after its drain: %v", err)
	}
}

// fetch is a GET that reports its failure in what it returns.
func fetch(c *client, url string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err.Error()
	}
	rsp, err := c.h3.RoundTrip(req)
	if err != nil {
		return "error: " + err.Error()
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	if err != nil {
		return "error reading the body: " + err.Error()
	}
	return string(b[:len(b)-min(len(b), 1)]) // without the newline
}

// TestRouterDrops: a datagram for a generation that is gone, or that
// never was, is dropped and counted by the Router that read it, and the
// reader goes on: the next request is answered.
func TestRouterDrops(t *testing.T) {
	t.Parallel()
	f, g1 := startFamily(t, 10*time.Second, false)
	g2 := f.upgrade(g1, 2)
	f.line("exit gen=1")
	if _, err := f.p.Wait(10 * time.Second); err != nil {
		t.Fatalf("generation 1 after its drain: %v", err)
	}
	c := newClient(t, f.roots)
	before := c.get(t, g2.url+"stats")

	// Hand-made short-header datagrams, as a client of generation 1
	// would send after it exited, and one naming generation 9.
	udp, err := net.Dial("udp", g2.url[len("https://"):len(g2.url)-1])
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	for _, g := range []uint32{1, 9} {
		if _, err := udp.Write(short(cidFor(g))); err != nil {
			t.Fatal(err)
		}
	}
	// The reader routes in the order of the socket's queue: the stats
	// request's datagrams, sent after, find both routed.
	after := c.get(t, g2.url+"stats")
	if d := count(t, after, "relay-dropped") - count(t, before, "relay-dropped"); d != 2 {
		t.Errorf("generation 2's router: before %s, after %s: %d more relay-dropped, want 2", before, after, d)
	}
	if d := count(t, after, "relayed") - count(t, before, "relayed"); d != 0 {
		t.Errorf("generation 2's router: before %s, after %s: %d more relayed, want none", before, after, d)
	}
}

// TestRouterQueueFull: a datagram that finds the queue to quic-go full is
// dropped and counted, and the reader goes on routing: the datagrams after
// it reach their generations. Generation 2's Router has room for one
// datagram and nobody reads it; the last datagram, for generation 1, is
// relayed there, and its arrival says generation 2's reader routed all
// that came before.
func TestRouterQueueFull(t *testing.T) {
	t.Parallel()
	f, g1 := startQueueFamily(t)
	g2 := f.upgrade(g1, 2)
	udp, err := net.Dial("udp", g2.url[len("https://"):len(g2.url)-1])
	if err != nil {
		t.Fatal(err)
	}
	defer udp.Close()
	var sent [][]byte
	for i, g := range []uint32{2, 2, 2, 9, 1} {
		// A byte apiece after the header tells them apart.
		b := append(short(cidFor(g)), byte(i))
		sent = append(sent, b)
		if _, err := udp.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	from := udp.LocalAddr().String()
	if line := f.line("read gen=1 "); proctest.Field(line, "from") != from || proctest.Field(line, "data") != fmt.Sprintf("%x", sent[4]) {
		t.Fatalf("%q: want generation 1's datagram %x from %s, relayed", line, sent[4], from)
	}
	if err := syscall.Kill(g2.pid, syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	// In order: the first is queued, the next two find the queue full,
	// the fourth names a generation that never was, the last is relayed.
	st := f.line("stats gen=2 ")
	if count(t, st, "router-own") != 1 || count(t, st, "queue-dropped") != 2 || count(t, st, "relay-dropped") != 1 ||
		count(t, st, "relayed") != 1 || count(t, st, "received") != 0 {
		t.Fatalf("%q: want router-own=1 queue-dropped=2 relay-dropped=1 relayed=1 received=0", st)
	}
	if line := f.line("read gen=2 "); proctest.Field(line, "from") != from || proctest.Field(line, "data") != fmt.Sprintf("%x", sent[0]) {
		t.Fatalf("%q: want the first datagram %x from %s", line, sent[0], from)
	}
}

// TestDrainDeadline: a request longer than the drain is cut at the
// deadline, its connection closed with H3_NO_ERROR (never left to an
// idle timeout), and Drain says so.
func TestDrainDeadline(t *testing.T) {
	t.Parallel()
	const drain = 200 * time.Millisecond
	f, g := startFamily(t, drain, false)
	c := newClient(t, f.roots)
	c.get(t, g.url)
	got := make(chan string, 1)
	go func() { got <- fetch(c, g.url+"?delay=1h") }()
	f.line("request gen=1 delay=1h")
	if err := syscall.Kill(g.pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	line := f.line("drained gen=1 ")
	if count(t, line, "conns") != 1 || count(t, line, "at-deadline") != 1 || proctest.Field(line, "deadline-exceeded") != "true" {
		t.Fatalf("%q: want the one connection closed at the deadline", line)
	}
	select {
	case s := <-got:
		if s == fmt.Sprintf("gen=1 pid=%d", g.pid) {
			t.Fatal("the hour-long request completed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hour-long request still runs 10 s after the drain")
	}
	closedGracefully(t, c.conn(t, 0))
}

// TestRouterDeadline: ReadFrom's deadlines and Close, on a Router in a
// generation process of its own (deadlineMain).
func TestRouterDeadline(t *testing.T) {
	t.Parallel()
	p := proctest.Start(t, "deadline", nil)
	line, err := p.WaitLine("deadline ", 30*time.Second)
	if err != nil {
		t.Fatalf("%v; output:\n%s", err, p.Output())
	}
	if line != "deadline ok" {
		t.Fatal(line)
	}
	if _, err := p.Wait(10 * time.Second); err != nil {
		t.Fatalf("the deadline helper: %v", err)
	}
}
