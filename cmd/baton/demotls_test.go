//go:build linux

package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton/internal/proctest"
)

// The demo server with -tls-cert and -tls-key serves HTTPS, and its
// clients resume their TLS sessions with every successor: after the first
// full handshake, each new connection — to generation 1, 2, 3 or 4 — is
// an abbreviated one.
func TestDemoServerTLSResumesAcrossUpgrades(t *testing.T) {
	t.Parallel()
	certFile, keyFile, roots := proctest.TLSCert(t, t.TempDir())
	s := startServer(t, baton(t), "demo-server", "-tls-cert", certFile, "-tls-key", keyFile, "-drain", "5s")
	url := strings.Replace(s.url, "http://", "https://", 1)
	client := &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true, // a handshake per request
			ForceAttemptHTTP2: true, // as a browser would, given a TLS config of its own
			TLSClientConfig:   &tls.Config{RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(4)},
		},
	}
	get := func() (body string, resumed bool, proto string) {
		t.Helper()
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("GET %s: %v", url, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK || resp.TLS == nil {
			t.Fatalf("GET %s: %s %q, %v", url, resp.Status, b, err)
		}
		return string(b), resp.TLS.DidResume, resp.Proto
	}

	if body, resumed, _ := get(); resumed || !strings.Contains(body, " gen=1") {
		t.Fatalf("first GET: %q, resumed %t; want generation 1, a full handshake", body, resumed)
	}
	if _, resumed, proto := get(); !resumed || proto != "HTTP/2.0" {
		t.Fatalf("second GET: resumed %t over %s; want resumed, HTTP/2.0", resumed, proto)
	}
	for gen := 2; gen <= 4; gen++ {
		pid, err := readPIDFile(s.pidFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(pid, syscall.SIGHUP); err != nil {
			t.Fatalf("SIGHUP to generation %d (pid %d): %v", gen-1, pid, err)
		}
		// The PID file names the successor once it is ready.
		deadline := time.Now().Add(30 * time.Second)
		for {
			if p, err := readPIDFile(s.pidFile); err == nil && p != pid {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("generation %d: the PID file still names pid %d 30s after SIGHUP", gen, pid)
			}
			time.Sleep(10 * time.Millisecond)
		}
		for range 3 {
			body, resumed, _ := get()
			// Until it drains, the old generation may still accept one.
			if !strings.Contains(body, fmt.Sprintf(" gen=%d", gen)) && !strings.Contains(body, fmt.Sprintf(" gen=%d", gen-1)) {
				t.Fatalf("after upgrade %d: %q; want generation %d", gen-1, body, gen)
			}
			if !resumed {
				t.Fatalf("after upgrade %d: %q answered with a full handshake; want a resumed session", gen-1, body)
			}
		}
	}
}

// -tls-cert without -tls-key, and the reverse, are usage errors that say
// so.
func TestDemoServerTLSFlagsTogether(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"demo-server", "-tls-cert", "c.pem"}, {"demo-server", "-tls-key", "k.pem"}} {
		code, _, stderr := batonIn(args...)
		if code != exitUsage || !strings.Contains(stderr, "-tls-cert and -tls-key go together") {
			t.Errorf("baton %q = %d, stderr %q; want %d and a message that both go together", args, code, stderr, exitUsage)
		}
	}
}
