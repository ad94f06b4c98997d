package main

import (
	"net"
	"testing"
)

// FuzzDemoAddr checks the -listen flag of "baton demo": it accepts only a
// loopback address, and returns one with a real port on the same host.
func FuzzDemoAddr(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8080", "127.0.0.1:0", "[::1]:0", "localhost:8080", "0.0.0.0:8080", ":8080", "127.0.0.1", "[::ffff:127.0.0.1]:1", "[fe80::1%lo]:1", "127.0.0.1:http"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		got, err := demoAddr(addr)
		if err != nil {
			return
		}
		host, port, err := net.SplitHostPort(got)
		if err != nil {
			t.Fatalf("demoAddr(%q) = %q: %v", addr, got, err)
		}
		if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
			t.Fatalf("demoAddr(%q) = %q: host %q is not loopback", addr, got, host)
		}
		if port == "0" {
			t.Fatalf("demoAddr(%q) = %q: no port picked", addr, got)
		}
		if inHost, _, _ := net.SplitHostPort(addr); !net.ParseIP(inHost).Equal(net.ParseIP(host)) {
			t.Fatalf("demoAddr(%q) = %q: another host", addr, got)
		}
	})
}
