//go:build linux || darwin

package baton

import "testing"

// BenchmarkIdleUpgrader is the in-process cost of an upgrader for a first
// generation: New, one listener, Ready, Stop.
func BenchmarkIdleUpgrader(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		u, err := newUpgrader(Options{})
		if err != nil {
			b.Fatal(err)
		}
		l, err := u.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		if err := u.Ready(); err != nil {
			b.Fatal(err)
		}
		l.Close()
		u.Stop()
	}
}
