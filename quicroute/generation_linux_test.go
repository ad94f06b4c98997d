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
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/proctest"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// The environment of a generation helper.
const (
	envCert  = "QUICROUTE_TEST_CERT"  // the TLS certificate's PEM file
	envKey   = "QUICROUTE_TEST_KEY"   // its key's
	envDrain = "QUICROUTE_TEST_DRAIN" // the drain deadline, a duration
	// envHold, if "1", makes a generation that handed over wait for
	// SIGUSR1 before it drains: a test can then show it serving its
	// connections beside its successor, as a slow drain would. The
	// final stop drains at once.
	envHold = "QUICROUTE_TEST_HOLD"
)

func init() {
	proctest.Register("generation", generationMain)
	proctest.Register("deadline", deadlineMain)
	proctest.Register("queue", queueMain)
}

func TestMain(m *testing.M) { proctest.Main(m) }

// generationMain is one generation of an HTTP/3 server on baton with a
// Router, as examples/http3 is, made to be watched: it prints "ready gen=
// pid= udp=" once ready, "request gen= delay=" when a request with a delay
// arrives, "exiting gen= handed-over=" when Exit closes, "drained gen= ..."
// with the drain's result and the Router's counts, and "exit gen=". GET /
// answers "gen=N pid=P" (after ?delay=D), GET /stats the Router's counts.
// SIGHUP upgrades, SIGTERM stops (baton's HandleSignals).
func generationMain() {
	fail := func(what string, err error) {
		fmt.Printf("fail pid=%d %s: %v\n", os.Getpid(), what, err)
		os.Exit(1)
	}
	drain, err := time.ParseDuration(os.Getenv(envDrain))
	if err != nil {
		fail(envDrain, err)
	}
	cert, err := tls.LoadX509KeyPair(os.Getenv(envCert), os.Getenv(envKey))
	if err != nil {
		fail("tls", err)
	}
	hold := make(chan os.Signal, 1)
	if os.Getenv(envHold) == "1" {
		signal.Notify(hold, syscall.SIGUSR1)
	} else {
		close(hold)
	}
	upg, err := baton.New(baton.Options{})
	if err != nil {
		fail("baton.New", err)
	}
	defer upg.Stop()
	gen := upg.Generation()
	keys, err := Keys(upg)
	if err != nil {
		fail("Keys", err)
	}
	pc, err := upg.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		fail("ListenPacket", err)
	}
	router, err := NewRouter(upg, pc, Options{})
	if err != nil {
		fail("NewRouter", err)
	}
	conns := NewConns()
	tr := &quic.Transport{
		Conn:                  router,
		ConnectionIDGenerator: router.CIDGenerator(),
		StatelessResetKey:     &keys.StatelessReset,
		TokenGeneratorKey:     &keys.Token,
		ConnContext:           conns.TransportConnContext,
	}
	ln, err := tr.ListenEarly(http3.ConfigureTLSConfig(&tls.Config{Certificates: []tls.Certificate{cert}}), &quic.Config{Allow0RTT: true})
	if err != nil {
		fail("ListenEarly", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, req *http.Request) {
		if q := req.URL.Query().Get("delay"); q != "" {
			d, err := time.ParseDuration(q)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			// The request arrived: a test that stops us now knows it
			// is in flight.
			fmt.Printf("request gen=%d delay=%s\n", gen, q)
			select {
			case <-time.After(d):
			case <-req.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "gen=%d pid=%d\n", gen, os.Getpid())
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, req *http.Request) {
		fmt.Fprintln(w, formatStats(router.Stats()))
	})
	srv := &http3.Server{Handler: mux, ConnContext: conns.HTTP3ConnContext}
	served := make(chan error, 1)
	// Serving before Ready: the predecessor stops reading the socket
	// once we are.
	go func() { served <- srv.ServeListener(ln) }()
	upg.HandleSignals()
	if err := upg.Ready(); err != nil {
		fail("Ready", err)
	}
	fmt.Printf("ready gen=%d pid=%d udp=%s\n", gen, os.Getpid(), pc.LocalAddr())

	<-upg.Exit()
	fmt.Printf("exiting gen=%d handed-over=%t\n", gen, upg.HandedOver())
	if upg.HandedOver() {
		<-hold
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	res, err := conns.Drain(ctx, srv, ln)
	<-served
	tr.Close()
	router.Close()
	fmt.Printf("drained gen=%d conns=%d at-deadline=%d refused=%d deadline-exceeded=%t %s\n",
		gen, res.Conns, res.AtDeadline, res.Refused, errors.Is(err, context.DeadlineExceeded), formatStats(router.Stats()))
	upg.Stop()
	fmt.Printf("exit gen=%d\n", gen)
}

// formatStats writes a Router's counts as the fields the tests read.
func formatStats(st Stats) string {
	return fmt.Sprintf("router-own=%d relayed=%d received=%d relay-dropped=%d queue-dropped=%d",
		st.Own, st.Relayed, st.Received, st.RelayDropped, st.QueueDropped)
}

// count returns the number in field key of line; the test fails if there
// is none.
func count(t *testing.T, line, key string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(proctest.Field(line, key), 10, 64)
	if err != nil {
		t.Fatalf("%q: no count %s: %v", line, key, err)
	}
	return n
}

// generation is a generation helper the test started or upgraded to.
type generation struct {
	pid int
	url string // https://127.0.0.1:PORT/
}

// family is the first generation of a service and the output of every
// generation after it.
type family struct {
	t     *testing.T
	p     *proctest.Proc
	roots *x509.CertPool
}

// startFamily starts generation 1 with the drain deadline drain, holding
// its drain for SIGUSR1 if hold is set.
func startFamily(t *testing.T, drain time.Duration, hold bool) (*family, generation) {
	t.Helper()
	certFile, keyFile, roots := proctest.TLSCert(t, t.TempDir())
	env := []string{
		"QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true",
		envCert + "=" + certFile,
		envKey + "=" + keyFile,
		envDrain + "=" + drain.String(),
	}
	if hold {
		env = append(env, envHold+"=1")
	}
	f := &family{t: t, p: proctest.Start(t, "generation", env), roots: roots}
	return f, f.ready(1)
}

// startQueueFamily starts generation 1 of queueMain.
func startQueueFamily(t *testing.T) (*family, generation) {
	t.Helper()
	f := &family{t: t, p: proctest.Start(t, "queue", nil)}
	return f, f.ready(1)
}

// ready waits for generation n to be ready.
func (f *family) ready(n int) generation {
	f.t.Helper()
	line := f.line(fmt.Sprintf("ready gen=%d ", n))
	pid, err := strconv.Atoi(proctest.Field(line, "pid"))
	if err != nil {
		f.t.Fatalf("%q: %v", line, err)
	}
	return generation{pid: pid, url: "https://" + proctest.Field(line, "udp") + "/"}
}

// upgrade sends SIGHUP to g, generation n-1, and returns generation n,
// tracked and stopped at the end of the test.
func (f *family) upgrade(g generation, n int) generation {
	f.t.Helper()
	if err := syscall.Kill(g.pid, syscall.SIGHUP); err != nil {
		f.t.Fatal(err)
	}
	next := f.ready(n)
	// A child of generation n-1, which exits first: it is reparented
	// to the test process (proctest's subreaper), which must reap it.
	proctest.Track(f.t, next.pid, 15*time.Second)
	f.t.Cleanup(func() { syscall.Kill(next.pid, syscall.SIGTERM) })
	if line := f.line(fmt.Sprintf("exiting gen=%d ", n-1)); proctest.Field(line, "handed-over") != "true" {
		f.t.Fatalf("%q: want handed-over=true once generation %d took over", line, n)
	}
	return next
}

// line waits for an output line starting with prefix.
func (f *family) line(prefix string) string {
	f.t.Helper()
	line, err := f.p.WaitLine(prefix, 20*time.Second)
	if err != nil {
		f.t.Fatalf("%v; output:\n%s", err, f.p.Output())
	}
	return line
}

// client is an HTTP/3 client that records its connections, to see why
// each ended. It never retries.
type client struct {
	h3    *http3.Transport
	mu    sync.Mutex
	conns []*quic.Conn
}

func newClient(t *testing.T, roots *x509.CertPool) *client {
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
	t.Cleanup(func() { c.h3.Close() })
	return c
}

func (c *client) get(t *testing.T, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	rsp, err := c.h3.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer rsp.Body.Close()
	b, err := io.ReadAll(rsp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	if rsp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s: %s", url, rsp.Status, b)
	}
	return strings.TrimSpace(string(b))
}

// conn returns the client's i-th connection.
func (c *client) conn(t *testing.T, i int) *quic.Conn {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.conns) <= i {
		t.Fatalf("the client opened %d connections, want at least %d", len(c.conns), i+1)
	}
	return c.conns[i]
}

// closedGracefully fails the test unless conn ends, within 10 s, with
// H3_NO_ERROR from the server: never an idle timeout or a stateless
// reset.
func closedGracefully(t *testing.T, conn *quic.Conn) {
	t.Helper()
	select {
	case <-conn.Context().Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection is still open 10 s after the drain")
	}
	var ae *quic.ApplicationError
	if cause := context.Cause(conn.Context()); !errors.As(cause, &ae) || ae.ErrorCode != quic.ApplicationErrorCode(http3.ErrCodeNoError) {
		t.Fatalf("the connection ended with %v, want H3_NO_ERROR", cause)
	}
}

// deadlineMain runs a Router on a real generation's socket, with no
// quic-go, and checks its ReadFrom deadlines: SetReadDeadline unblocks a
// waiting ReadFrom with a timeout, as quic.Transport.Close needs; Close
// with net.ErrClosed. It prints "deadline ok" or "deadline fail: why".
func deadlineMain() {
	fmt.Printf("deadline %s\n", checkDeadline())
}

func checkDeadline() string {
	upg, err := baton.New(baton.Options{})
	if err != nil {
		return fmt.Sprintf("fail: baton.New: %v", err)
	}
	defer upg.Stop()
	pc, err := upg.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return fmt.Sprintf("fail: ListenPacket: %v", err)
	}
	r, err := NewRouter(upg, pc, Options{})
	if err != nil {
		pc.Close()
		return fmt.Sprintf("fail: NewRouter: %v", err)
	}
	defer r.Close()
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
			return fmt.Sprintf("fail: ReadFrom after a deadline = %v, want a timeout", err)
		}
	case <-time.After(10 * time.Second):
		return "fail: ReadFrom still blocked 10 s after its deadline passed"
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
			return fmt.Sprintf("fail: ReadFrom after Close = %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		return "fail: ReadFrom still blocked 10 s after Close"
	}
	return "ok"
}

// queueMain is a generation whose Router has room for one datagram and no
// quic-go to read it: the newest generation reads nothing until SIGUSR1,
// then prints "stats gen= ..." and the one datagram it has queued ("read
// gen= from= data=" in hex); generation 1 reads and prints what the newer
// ones relay to it. SIGHUP upgrades ("ready gen= pid= udp=", "exiting
// gen= handed-over=" once the Router stopped reading the socket), SIGTERM
// stops ("exit gen=").
func queueMain() {
	fail := func(what string, err error) {
		fmt.Printf("fail pid=%d %s: %v\n", os.Getpid(), what, err)
		os.Exit(1)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGUSR1)
	upg, err := baton.New(baton.Options{})
	if err != nil {
		fail("baton.New", err)
	}
	defer upg.Stop()
	gen := upg.Generation()
	pc, err := upg.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		fail("ListenPacket", err)
	}
	r, err := NewRouter(upg, pc, Options{Queue: 1})
	if err != nil {
		fail("NewRouter", err)
	}
	defer r.Close()
	printRead := func(b []byte, from net.Addr) {
		fmt.Printf("read gen=%d from=%s data=%x\n", gen, from, b)
	}
	reading := make(chan struct{})
	if gen == 1 {
		go func() {
			defer close(reading)
			b := make([]byte, 1500)
			for {
				n, from, err := r.ReadFrom(b)
				if err != nil {
					return // closed
				}
				printRead(b[:n], from)
			}
		}()
	} else {
		close(reading)
	}
	if err := upg.Ready(); err != nil {
		fail("Ready", err)
	}
	fmt.Printf("ready gen=%d pid=%d udp=%s\n", gen, os.Getpid(), pc.LocalAddr())
	for s := range sigs {
		switch s {
		case syscall.SIGHUP:
			if err := upg.Upgrade(); err != nil {
				fmt.Printf("upgrade-failed gen=%d err=%q\n", gen, err)
				continue
			}
			// The successor reads the socket from now on: every
			// datagram the test sends after this line is its to route.
			<-r.readDone
			fmt.Printf("exiting gen=%d handed-over=%t\n", gen, upg.HandedOver())
		case syscall.SIGUSR1:
			fmt.Printf("stats gen=%d %s\n", gen, formatStats(r.Stats()))
			b := make([]byte, 1500)
			// The datagram is queued already: the deadline only keeps
			// a broken Router from hanging the helper.
			r.SetReadDeadline(time.Now().Add(10 * time.Second))
			n, from, err := r.ReadFrom(b)
			if err != nil {
				fail("ReadFrom", err)
			}
			printRead(b[:n], from)
		case syscall.SIGTERM:
			upg.Stop()
			r.Close()
			<-reading
			fmt.Printf("exit gen=%d\n", gen)
			return
		}
	}
}
