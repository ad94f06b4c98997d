package quicroute

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/proctest"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// links stands for baton's generation links between generations in one
// process: RelayPacket delivers to the named generation's queue, or drops
// when it is gone or full. The routing under test is the Router's; the
// processes and the real links are examples/http3's test.
type links struct {
	mu   sync.Mutex
	gens map[int]*gen
	// asked, if not nil, hears of every RelayPacket call: the
	// generation asked for.
	asked chan int
}

type gen struct {
	links *links
	n     int
	exit  chan struct{}
	final bool // Exit means the final stop
	in    chan baton.RelayedPacket
}

func (l *links) add(n int) *gen {
	g := &gen{links: l, n: n, exit: make(chan struct{}), in: make(chan baton.RelayedPacket, 256)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.gens == nil {
		l.gens = make(map[int]*gen)
	}
	l.gens[n] = g
	return g
}

func (g *gen) Generation() int       { return g.n }
func (g *gen) Exit() <-chan struct{} { return g.exit }

// HandedOver: Exit closed means a successor took over, unless final is
// set.
func (g *gen) HandedOver() bool {
	select {
	case <-g.exit:
		return !g.final
	default:
		return false
	}
}

func (g *gen) RelayedPackets(channel string) (<-chan baton.RelayedPacket, error) {
	return g.in, nil
}

func (g *gen) RelayPacket(channel string, n int, from netip.AddrPort, b []byte) error {
	g.links.mu.Lock()
	to := g.links.gens[n]
	asked := g.links.asked
	g.links.mu.Unlock()
	if asked != nil {
		asked <- n
	}
	if to == nil || n == g.n {
		return fmt.Errorf("generation %d: %w", n, baton.ErrRelayDropped)
	}
	select {
	case to.in <- baton.RelayedPacket{From: from, Data: append([]byte(nil), b...)}:
		return nil
	default:
		return fmt.Errorf("generation %d full: %w", n, baton.ErrRelayDropped)
	}
}

// server is one generation: a Router on its copy of the socket, a
// quic.Transport and an HTTP/3 server answering "gen=N".
type server struct {
	router *Router
	tr     *quic.Transport
	ln     *quic.EarlyListener
	srv    *http3.Server
	conns  *Conns
	served chan error
}

func serve(t *testing.T, g *gen, sock *net.UDPConn, tlsConf *tls.Config, keys *TransportKeys) *server {
	t.Helper()
	f, err := sock.File()
	if err != nil {
		t.Fatal(err)
	}
	// A descriptor of our own for the one socket, as each generation has.
	pc, err := net.FilePacketConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRouter(g, pc, Options{})
	if err != nil {
		t.Fatalf("NewRouter: %v", err)
	}
	s := &server{router: r, conns: NewConns(), served: make(chan error, 1)}
	s.tr = &quic.Transport{
		Conn:                  r,
		ConnectionIDGenerator: r.CIDGenerator(),
		StatelessResetKey:     &keys.StatelessReset,
		TokenGeneratorKey:     &keys.Token,
		ConnContext:           s.conns.TransportConnContext,
	}
	s.ln, err = s.tr.ListenEarly(http3.ConfigureTLSConfig(tlsConf), &quic.Config{Allow0RTT: true})
	if err != nil {
		t.Fatalf("ListenEarly: %v", err)
	}
	s.srv = &http3.Server{
		ConnContext: s.conns.HTTP3ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if d, err := time.ParseDuration(req.URL.Query().Get("delay")); err == nil {
				select {
				case <-time.After(d):
				case <-req.Context().Done():
					return
				}
			}
			fmt.Fprintf(w, "gen=%d\n", g.n)
		}),
	}
	go func() { s.served <- s.srv.ServeListener(s.ln) }()
	t.Cleanup(func() {
		s.srv.Close()
		s.ln.Close()
		s.tr.Close()
		r.Close()
	})
	return s
}

// client is an HTTP/3 client that records why each of its connections
// ended.
type client struct {
	h3    *http3.Transport
	mu    sync.Mutex
	conns []*quic.Conn
}

func newClient(roots *x509.CertPool) *client {
	c := &client{}
	c.h3 = &http3.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		Dial: func(ctx context.Context, addr string, tlsConf *tls.Config, conf *quic.Config) (*quic.Conn, error) {
			conn, err := quic.DialAddrEarly(ctx, addr, tlsConf, conf)
			if err == nil {
				c.mu.Lock()
				c.conns = append(c.conns, conn)
				c.mu.Unlock()
			}
			return conn, err
		},
	}
	return c
}

func (c *client) get(t *testing.T, url string) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	rsp, err := c.h3.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return strings.TrimSpace(string(b))
}

// TestRouterKeepsConnections: a connection of generation 1 goes on being
// served by generation 1 after generation 2 took the socket over, its
// datagrams relayed by generation 2's Router; a new connection goes to
// generation 2; generation 1's drain ends with the client closing its
// connection gracefully after GOAWAY.
func TestRouterKeepsConnections(t *testing.T) {
	t.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	_, _, roots, tlsConf := tlsSetup(t)
	keys, err := Keys(&state{})
	if err != nil {
		t.Fatal(err)
	}
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	url := "https://" + sock.LocalAddr().String() + "/"

	var l links
	g1 := l.add(1)
	s1 := serve(t, g1, sock, tlsConf, keys)
	old := newClient(roots)
	defer old.h3.Close()
	if got := old.get(t, url); got != "gen=1" {
		t.Fatalf("GET / on generation 1 = %q, want gen=1", got)
	}

	// Generation 2 serves; generation 1 is told a successor took over
	// and stops reading the socket.
	g2 := l.add(2)
	s2 := serve(t, g2, sock, tlsConf, keys)
	close(g1.exit)
	<-s1.router.readDone

	// Slow requests on the old connection, while a new client opens a
	// connection of its own.
	for range 5 {
		if got := old.get(t, url+"?delay=20ms"); got != "gen=1" {
			t.Fatalf("GET / on the old connection = %q, want gen=1 (its generation)", got)
		}
	}
	fresh := newClient(roots)
	defer fresh.h3.Close()
	if got := fresh.get(t, url); got != "gen=2" {
		t.Fatalf("GET / on a new connection = %q, want gen=2 (the newest)", got)
	}
	if st := s2.router.Stats(); st.Relayed == 0 || st.RelayDropped != 0 {
		t.Errorf("generation 2's router: %+v, want datagrams relayed and none dropped", st)
	}
	if st := s1.router.Stats(); st.Received == 0 {
		t.Errorf("generation 1's router: %+v, want datagrams received from generation 2", st)
	}

	// Generation 1 drains: GOAWAY, and the old client closes.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := s1.conns.Drain(ctx, s1.srv, s1.ln)
	if err != nil || res.Conns != 1 || res.AtDeadline != 0 || res.Refused != 0 {
		t.Fatalf("Drain = %+v, %v; want 1 connection, drained without the deadline", res, err)
	}
	if live, _ := s1.conns.Live(); live != 0 {
		t.Fatalf("after Drain, generation 1 has %d connections", live)
	}
	old.mu.Lock()
	conns := old.conns
	old.mu.Unlock()
	if len(conns) != 1 {
		t.Fatalf("the old client opened %d connections, want 1", len(conns))
	}
	select {
	case <-conns[0].Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatalf("the old client's connection is still open after the drain")
	}
	var ae *quic.ApplicationError
	if cause := context.Cause(conns[0].Context()); !errors.As(cause, &ae) || ae.ErrorCode != quic.ApplicationErrorCode(http3.ErrCodeNoError) {
		t.Fatalf("the old connection ended with %v, want H3_NO_ERROR", cause)
	}
	// Its next request goes to generation 2.
	if got := old.get(t, url); got != "gen=2" {
		t.Fatalf("GET / after the drain = %q, want gen=2", got)
	}
	if st := s2.router.Stats(); st.QueueDropped != 0 {
		t.Errorf("generation 2's router dropped datagrams: %+v", st)
	}
}

// TestRouterDeadline: SetReadDeadline unblocks a waiting ReadFrom with a
// timeout, as quic.Transport.Close needs; Close with net.ErrClosed.
func TestRouterDeadline(t *testing.T) {
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	var l links
	r, err := NewRouter(l.add(1), sock, Options{})
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, _, err := r.ReadFrom(make([]byte, 1500))
		errc <- err
	}()
	r.SetReadDeadline(time.Now().Add(time.Hour))
	r.SetReadDeadline(time.Now())
	select {
	case err := <-errc:
		if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
			t.Fatalf("ReadFrom after a deadline = %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadFrom still blocked 10 s after its deadline passed")
	}
	r.SetReadDeadline(time.Time{})
	go func() {
		_, _, err := r.ReadFrom(make([]byte, 1500))
		errc <- err
	}()
	r.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("ReadFrom after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ReadFrom still blocked 10 s after Close")
	}
}

func tlsSetup(t *testing.T) (string, string, *x509.CertPool, *tls.Config) {
	certFile, keyFile, roots := proctest.TLSCert(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, roots, &tls.Config{Certificates: []tls.Certificate{cert}}
}

// TestRouterFinalStop: when Exit closes without a successor, the Router
// goes on reading the socket, which nobody else reads, so that the drain
// hears its clients: requests go on until GOAWAY, and the client's close
// arrives.
func TestRouterFinalStop(t *testing.T) {
	t.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	_, _, roots, tlsConf := tlsSetup(t)
	keys, err := Keys(&state{})
	if err != nil {
		t.Fatal(err)
	}
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	url := "https://" + sock.LocalAddr().String() + "/"
	var l links
	g := l.add(1)
	g.final = true
	s := serve(t, g, sock, tlsConf, keys)
	c := newClient(roots)
	defer c.h3.Close()
	if got := c.get(t, url); got != "gen=1" {
		t.Fatalf("GET / = %q, want gen=1", got)
	}
	close(g.exit)
	if got := c.get(t, url+"?delay=10ms"); got != "gen=1" {
		t.Fatalf("GET / after the final Exit = %q, want gen=1", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := s.conns.Drain(ctx, s.srv, s.ln); err != nil || res.AtDeadline != 0 {
		t.Fatalf("Drain = %+v, %v; want a drain before the deadline", res, err)
	}
	if st := s.router.Stats(); st.Relayed != 0 || st.Own == 0 {
		t.Errorf("router: %+v, want every datagram its own", st)
	}
}

// TestRouterDrops: a datagram for a generation that is gone is dropped
// and counted, not delivered; one that finds the queue to quic-go full is
// dropped and counted; neither blocks the reader.
func TestRouterDrops(t *testing.T) {
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	l := links{asked: make(chan int, 1)}
	r, err := NewRouter(l.add(1), sock, Options{Queue: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	client, err := net.DialUDP("udp", nil, sock.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	// Three of generation 1's datagrams, which nobody reads from the
	// Router, then one for generation 9, which never was.
	for _, g := range []uint32{1, 1, 1, 9} {
		if _, err := client.Write(short(cidFor(g))); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case g := <-l.asked:
		if g != 9 {
			t.Fatalf("RelayPacket asked for generation %d, want 9", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the datagram for generation 9 was never routed")
	}
	// The reader routes in order: the first datagram is queued, the
	// next two found the queue full, the last was relayed and dropped.
	want := Stats{Own: 1, QueueDropped: 2, RelayDropped: 1}
	if st := r.Stats(); st != want {
		t.Fatalf("Stats() = %+v, want %+v", st, want)
	}
	b := make([]byte, 100)
	n, from, err := r.ReadFrom(b)
	if err != nil || from.String() != client.LocalAddr().String() || string(b[:n]) != string(short(cidFor(1))) {
		t.Fatalf("ReadFrom = %d bytes from %v, %v; want generation 1's datagram from %v", n, from, err, client.LocalAddr())
	}
}

// TestDrainDeadline: a request longer than the drain is cut at the
// deadline, its connection closed with H3_NO_ERROR (never left to an
// idle timeout), and Drain says so.
func TestDrainDeadline(t *testing.T) {
	t.Setenv("QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING", "true")
	_, _, roots, tlsConf := tlsSetup(t)
	keys, err := Keys(&state{})
	if err != nil {
		t.Fatal(err)
	}
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sock.Close()
	url := "https://" + sock.LocalAddr().String() + "/"
	var l links
	g := l.add(1)
	g.final = true
	s := serve(t, g, sock, tlsConf, keys)
	c := newClient(roots)
	defer c.h3.Close()
	c.get(t, url)
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, url+"?delay=1h", nil)
		rsp, err := c.h3.RoundTrip(req)
		if err == nil {
			_, err = io.ReadAll(rsp.Body)
			rsp.Body.Close()
		}
		errc <- err
	}()
	// Time for the request to reach the server, which has no hook to
	// say so.
	time.Sleep(50 * time.Millisecond)
	close(g.exit)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	res, err := s.conns.Drain(ctx, s.srv, s.ln)
	if !errors.Is(err, context.DeadlineExceeded) || res.Conns != 1 || res.AtDeadline != 1 {
		t.Fatalf("Drain = %+v, %v; want the one connection closed at the deadline", res, err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("the hour-long request completed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the hour-long request still runs after the drain")
	}
	c.mu.Lock()
	conn := c.conns[0]
	c.mu.Unlock()
	select {
	case <-conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection is still open after the drain")
	}
	var ae *quic.ApplicationError
	if cause := context.Cause(conn.Context()); !errors.As(cause, &ae) || ae.ErrorCode != quic.ApplicationErrorCode(http3.ErrCodeNoError) {
		t.Fatalf("the connection ended with %v, want H3_NO_ERROR", cause)
	}
}
