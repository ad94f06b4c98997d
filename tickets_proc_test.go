//go:build linux

package baton_test

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/proctest"
)

// tlsListener is the test server's HTTPS listener (serverConfig.TLSCert):
// the TCP listener named "tls", inherited or new, with TLSSessionTickets.
// It prints "tls gen=G addr=ADDR".
func tlsListener(upg *baton.Upgrader, cfg serverConfig, gen int) net.Listener {
	ln, err := upg.Listener("tls")
	if err != nil {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		check(err)
		check(upg.Add("tls", l.(*net.TCPListener)))
		ln = l
	}
	cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
	check(err)
	tcfg := &tls.Config{Certificates: []tls.Certificate{cert}}
	check(upg.TLSSessionTickets(tcfg, baton.TicketOptions{Rotation: cfg.TicketRotation, Keys: cfg.TicketKeys}))
	fmt.Printf("tls gen=%d addr=%s\n", gen, ln.Addr())
	return tls.NewListener(ln, tcfg)
}

// tlsAddr waits for generation gen's tls line and returns its address.
func (s *server) tlsAddr(gen int) string {
	s.t.Helper()
	line, err := s.proc.WaitLine(fmt.Sprintf("tls gen=%d ", gen), 20*time.Second)
	if err != nil {
		s.t.Fatal(err)
	}
	return proctest.Field(line, "addr")
}

// tlsClient is an HTTPS client with a session cache of its own and a new
// connection for every request, so each request is a handshake.
type tlsClient struct {
	hc *http.Client
}

func newTLSClient(roots *x509.CertPool) *tlsClient {
	return &tlsClient{hc: &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig: &tls.Config{
				RootCAs:            roots,
				ClientSessionCache: tls.NewLRUClientSessionCache(4),
			},
		},
	}}
}

// get requests / at addr and reports the generation that answered and
// whether its handshake resumed a session.
func (c *tlsClient) get(t *testing.T, addr string) (gen string, resumed bool) {
	t.Helper()
	resp, err := c.hc.Get("https://" + addr + "/")
	if err != nil {
		t.Fatalf("GET https://%s/: %v", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || resp.TLS == nil {
		t.Fatalf("GET https://%s/: %s %q, %v", addr, resp.Status, b, err)
	}
	return proctest.Field(string(b), "gen"), resp.TLS.DidResume
}

// Clients of an HTTPS server resume their TLS sessions with every
// successor: after the first full handshake, every connection, to
// whichever generation, is resumed — across five upgrades, with keys
// rotating every 300ms in each generation (at least one rotation between
// two upgrades). Real processes, real sockets, the link carrying the keys.
func TestTLSResumesAcrossUpgrades(t *testing.T) {
	t.Parallel()
	const rotation = 300 * time.Millisecond
	certFile, keyFile, roots := proctest.TLSCert(t, t.TempDir())
	// Keys at the default (24): a ticket stays good for 7 seconds or
	// more, far longer than an upgrade takes even under -race.
	s := startServer(t, serverConfig{TLSCert: certFile, TLSKey: keyFile, TicketRotation: rotation})
	addr := s.tlsAddr(1)

	const n, upgrades = 8, 5
	clients := make([]*tlsClient, n)
	for i := range clients {
		clients[i] = newTLSClient(roots)
		if _, resumed := clients[i].get(t, addr); resumed {
			t.Fatalf("client %d: the first handshake resumed a session it never had", i)
		}
	}
	resumedAll := func(round string) {
		t.Helper()
		for i, c := range clients {
			for range 2 {
				// Right after an upgrade the old generation may still
				// accept a connection before it drains: either may answer.
				gen, resumed := c.get(t, addr)
				if gen != fmt.Sprint(s.gen) && gen != fmt.Sprint(s.gen-1) {
					t.Fatalf("%s: client %d was answered by generation %s; want %d or %d", round, i, gen, s.gen-1, s.gen)
				}
				if !resumed {
					t.Fatalf("%s: client %d did a full handshake with generation %s; want a resumed session", round, i, gen)
				}
			}
		}
	}
	resumedAll("generation 1")
	for range upgrades {
		// The passage of time is the point here: each generation rotates
		// at least once before it hands over.
		time.Sleep(rotation + rotation/2)
		s.mustUpgrade()
		if got := s.tlsAddr(s.gen); got != addr {
			t.Fatalf("generation %d serves TLS on %s; want the inherited %s", s.gen, got, addr)
		}
		resumedAll(fmt.Sprintf("after upgrade to generation %d", s.gen))
	}
	for _, c := range clients {
		c.hc.CloseIdleConnections()
	}
	s.stop()
}

// Keys really rotate in a served process, and an upgrade does not revive
// old ones: with two keys kept, a ticket is good for one to two
// rotations, so after three it no longer resumes, in the generation that
// issued it or its successor.
func TestTLSTicketsExpireAcrossUpgrades(t *testing.T) {
	t.Parallel()
	// Long enough that a ticket fetched right before a rotation still
	// resumes on the next connection, even under -race on a busy machine.
	const rotation = 500 * time.Millisecond
	certFile, keyFile, roots := proctest.TLSCert(t, t.TempDir())
	s := startServer(t, serverConfig{TLSCert: certFile, TLSKey: keyFile, TicketRotation: rotation, TicketKeys: 2})
	addr := s.tlsAddr(1)

	stale := newTLSClient(roots)
	stale.get(t, addr)
	if _, resumed := stale.get(t, addr); !resumed {
		t.Fatal("a fresh ticket did not resume")
	}
	time.Sleep(3*rotation + rotation/2)
	if _, resumed := stale.get(t, addr); resumed {
		t.Fatalf("a ticket three rotations old resumed; with 2 keys it must not")
	}

	stale.get(t, addr)
	s.mustUpgrade()
	s.tlsAddr(s.gen)
	time.Sleep(3*rotation + rotation/2)
	if gen, resumed := stale.get(t, addr); resumed {
		t.Fatalf("generation %s resumed=%t a ticket of generation 1 three rotations old; want generation 2, not resumed", gen, resumed)
	}
	s.stop()
}
