//go:build linux

package baton

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/proctest"
)

// tlsGen is one generation's TLS server, in process: its config, its
// rotator on a clock the test moves, and the state it last saved.
type tlsGen struct {
	cfg   *tls.Config
	rot   *ticketRotator
	addr  string
	mu    sync.Mutex
	state []byte
	clock time.Time
}

// startTLSGen serves cfg (a copy of base) on a new listener with a
// rotator started from the predecessor's state (nil: none). Each
// connection is handshaken, answered with one byte — which carries a TLS
// 1.3 ticket to the client — and closed.
func startTLSGen(t *testing.T, base *tls.Config, pred []byte, now time.Time, every time.Duration, keep int) *tlsGen {
	t.Helper()
	g := &tlsGen{cfg: base.Clone(), clock: now}
	g.rot = newTicketRotator(every, keep, pred, pred != nil, slog.New(slog.DiscardHandler))
	g.rot.now = func() time.Time { g.mu.Lock(); defer g.mu.Unlock(); return g.clock }
	g.rot.install = g.cfg.SetSessionTicketKeys
	g.rot.save = func(b []byte) error { g.mu.Lock(); defer g.mu.Unlock(); g.state = b; return nil }
	if err := g.rot.start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", g.cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	g.addr = ln.Addr().String()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if c.(*tls.Conn).Handshake() == nil {
					c.Write([]byte{'x'})
				}
			}()
		}
	}()
	return g
}

// rotateAt moves g's clock to now and rotates.
func (g *tlsGen) rotateAt(t *testing.T, now time.Time) {
	t.Helper()
	g.mu.Lock()
	g.clock = now
	g.mu.Unlock()
	if err := g.rot.rotate(); err != nil {
		t.Fatalf("rotate: %v", err)
	}
}

func (g *tlsGen) saved() []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state
}

// resumes connects to g with client's session cache and reports whether
// the session was resumed.
func resumes(t *testing.T, g *tlsGen, client *tls.Config) bool {
	t.Helper()
	c, err := tls.Dial("tcp", g.addr, client)
	if err != nil {
		t.Fatalf("dial %s: %v", g.addr, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// Read the server's byte: a TLS 1.3 ticket arrives after the
	// handshake, and only a read takes it in.
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("read from %s: %v", g.addr, err)
	}
	return c.ConnectionState().DidResume
}

func tlsConfigs(t *testing.T, version uint16) (server, client *tls.Config, roots *x509.CertPool) {
	certFile, keyFile, roots := proctest.TLSCert(t, t.TempDir())
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	server = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: version, MaxVersion: version}
	client = &tls.Config{RootCAs: roots, ServerName: "localhost", MinVersion: version, MaxVersion: version,
		ClientSessionCache: tls.NewLRUClientSessionCache(8)}
	return server, client, roots
}

// Sessions resume across generations that pass the state on, also while
// both rotate side by side, until their key is pushed out; sessions of a
// generation whose state was lost do not. On an injected clock, with real
// handshakes, for TLS 1.2 and 1.3.
func TestTicketsResumeAcrossGenerations(t *testing.T) {
	t.Parallel()
	for _, version := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(version), func(t *testing.T) {
			t.Parallel()
			const every, keep = time.Hour, 3
			base, client, _ := tlsConfigs(t, version)
			now := t0

			g1 := startTLSGen(t, base, nil, now, every, keep)
			if resumes(t, g1, client) {
				t.Fatal("first connection resumed: there was no session")
			}
			if !resumes(t, g1, client) {
				t.Fatal("second connection to the same generation did not resume")
			}
			// A client whose ticket dates from generation 1's first key.
			early := client.Clone()
			early.ClientSessionCache = tls.NewLRUClientSessionCache(8)
			resumes(t, g1, early)

			// The successor starts from the state generation 1 saved.
			g2 := startTLSGen(t, base, g1.saved(), now.Add(time.Minute), every, keep)
			if !resumes(t, g2, client) {
				t.Fatal("a ticket of generation 1 did not resume with its successor")
			}

			// Both still run; generation 1 rotates first and issues a
			// ticket under the next key, which generation 2 already reads.
			g1.rotateAt(t, now.Add(every))
			if !resumes(t, g1, client) {
				t.Fatal("generation 1 did not resume its own session after rotating")
			}
			if !resumes(t, g2, client) {
				t.Fatal("generation 2, not rotated yet, did not resume a ticket under generation 1's new key")
			}
			g2.rotateAt(t, now.Add(every+time.Second))
			if !resumes(t, g2, client) {
				t.Fatal("generation 2 did not resume after rotating")
			}

			// Generation 3 from 2's state, after another rotation.
			g2.rotateAt(t, now.Add(2*every))
			g3 := startTLSGen(t, base, g2.saved(), now.Add(2*every+time.Minute), every, keep)
			if !resumes(t, g3, client) {
				t.Fatal("generation 3 did not resume a ticket of generation 2")
			}
			// The early ticket's key is the third newest: still good.
			if !resumes(t, g3, early) {
				t.Fatal("a ticket two rotations old did not resume; keep is 3")
			}
			// One more rotation pushes it out.
			early2 := client.Clone()
			early2.ClientSessionCache = tls.NewLRUClientSessionCache(8)
			resumes(t, g1, early2) // generation 1's current key: rotated at now+every
			g3.rotateAt(t, now.Add(3*every))
			g3.rotateAt(t, now.Add(4*every))
			if resumes(t, g3, early2) {
				t.Fatal("a ticket whose key was pushed out (keep 3) resumed")
			}

			// A generation that lost the state (none passed): no resumption.
			lost := startTLSGen(t, base, nil, now.Add(4*every), every, keep)
			if resumes(t, lost, client) {
				t.Fatal("a generation with new keys resumed a session of the old ones")
			}
		})
	}
}

// run rotates on its own, on the real clock, saving before it installs,
// and stops when done is closed.
func TestTicketRotatorRun(t *testing.T) {
	t.Parallel()
	const every = 50 * time.Millisecond
	saved := make(chan ticketRing, 16)
	var mu sync.Mutex
	var installed [][32]byte
	tr := newTicketRotator(every, 2, nil, false, slog.New(slog.DiscardHandler))
	tr.save = func(b []byte) error {
		r, err := parseTicketRing(b)
		if err != nil {
			t.Errorf("saved state does not parse: %v", err)
		}
		saved <- r
		return nil
	}
	tr.install = func(k [][32]byte) { mu.Lock(); installed = k; mu.Unlock() }
	if err := tr.start(); err != nil {
		t.Fatal(err)
	}
	first := <-saved
	done := make(chan struct{})
	ended := make(chan struct{})
	go func() { tr.run(done); close(ended) }()

	prev := first
	for i := range 3 {
		select {
		case r := <-saved:
			if r.keys[0].key != prev.next.key {
				t.Fatalf("rotation %d: the new key is not the one announced as next", i+1)
			}
			if len(r.keys) > 2 {
				t.Fatalf("rotation %d: %d keys kept; want at most 2", i+1, len(r.keys))
			}
			prev = r
		case <-time.After(5 * time.Second):
			t.Fatalf("no rotation %d within 5s at a rotation of %v", i+1, every)
		}
	}
	close(done)
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return within 5s of done being closed")
	}
	mu.Lock()
	defer mu.Unlock()
	// The last rotation was saved before it was installed; it may be
	// newer than prev, never older.
	if len(installed) == 0 || (installed[0] != prev.keys[0].key && installed[0] != prev.next.key) {
		t.Fatalf("the installed keys are not the last saved ones")
	}
}

// TLSSessionTickets refuses what it cannot serve.
func TestTLSSessionTicketsRefuses(t *testing.T) {
	u := &Upgrader{}
	for _, tc := range []struct {
		name string
		cfg  *tls.Config
		o    TicketOptions
	}{
		{"nil config", nil, TicketOptions{}},
		{"tickets disabled", &tls.Config{SessionTicketsDisabled: true}, TicketOptions{}},
		{"rotation too short", &tls.Config{}, TicketOptions{Rotation: time.Millisecond}},
		{"too many keys", &tls.Config{}, TicketOptions{Keys: MaxTicketKeys + 1}},
	} {
		if err := u.TLSSessionTickets(tc.cfg, tc.o); err == nil {
			t.Errorf("TLSSessionTickets(%s) = nil; want an error", tc.name)
		}
	}
	if ticketsCalled.Load() {
		t.Error("a refused TLSSessionTickets counts as the process's one call")
	}
}

// No key reaches the log, in any spelling: not when the predecessor's
// state is refused (its error names positions, never bytes), not when
// keys are taken over or rotated, at the most verbose level.
func TestTicketKeysNeverLogged(t *testing.T) {
	t.Parallel()
	var buf strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var keys [][32]byte
	note := func(r ticketRing) {
		for _, k := range append([]ticketKey{r.next}, r.keys...) {
			keys = append(keys, k.key)
		}
	}

	good := testRing(t, 3)
	note(good)
	bad := good.encode()
	copy(bad[2+ticketEntryLen*3+8:], bad[2+8:2+ticketEntryLen]) // a repeated key
	for _, state := range [][]byte{bad, good.encode()} {
		tr := newTicketRotator(time.Hour, 3, state, true, log)
		now := t0
		tr.now = func() time.Time { return now }
		tr.install = func([][32]byte) {}
		tr.save = func([]byte) error { return nil }
		if err := tr.start(); err != nil {
			t.Fatal(err)
		}
		for range 5 {
			now = now.Add(time.Hour)
			if err := tr.rotate(); err != nil {
				t.Fatal(err)
			}
			note(tr.ring)
		}
	}
	mu.Lock()
	out := buf.String()
	mu.Unlock()
	if !strings.Contains(out, "unusable") || !strings.Contains(out, "taken over") || !strings.Contains(out, "rotated") {
		t.Fatalf("the log lacks the refusal, the takeover or the rotations:\n%s", out)
	}
	for _, k := range keys {
		for _, spelling := range []string{string(k[:]), hex.EncodeToString(k[:]), strings.ToUpper(hex.EncodeToString(k[:])),
			base64.StdEncoding.EncodeToString(k[:]), base64.RawURLEncoding.EncodeToString(k[:]), fmt.Sprint(k), fmt.Sprintf("%x", k[:8])} {
			if strings.Contains(out, spelling) {
				t.Fatalf("a session ticket key is in the log as %q:\n%s", spelling, out)
			}
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}
