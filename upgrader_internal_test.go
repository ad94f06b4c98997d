//go:build linux || darwin

package baton

import "testing"

// The Upgrader in this process, without a successor: the states its calls
// move it through, and what it costs. (The process-level tests of
// upgrading, with real successors, are in upgrader_test.go; the registry's
// own tests, and the helpers used here, in fds_test.go.)

func TestUpgraderStates(t *testing.T) {
	t.Parallel()
	t.Run("upgrade before ready", func(t *testing.T) {
		t.Parallel()
		u := newTestUpgrader(t)
		if err := u.Upgrade(); err != ErrNotReady {
			t.Errorf("Upgrade before Ready = %v, want ErrNotReady", err)
		}
		if err := u.WaitForParent(t.Context()); err != nil {
			t.Errorf("WaitForParent of a first generation = %v, want nil at once", err)
		}
	})
	t.Run("stop before ready", func(t *testing.T) {
		t.Parallel()
		u := newTestUpgrader(t)
		u.Stop()
		checkStopped(t, u)
	})
	t.Run("stop after ready", func(t *testing.T) {
		t.Parallel()
		u := newTestUpgrader(t)
		if err := u.Ready(); err != nil {
			t.Fatal(err)
		}
		if err := u.Ready(); err != nil {
			t.Errorf("second Ready = %v, want nil", err)
		}
		select {
		case <-u.Exit():
			t.Fatalf("Exit closed before Stop")
		default:
		}
		u.Stop()
		checkStopped(t, u)
	})
	t.Run("registry closed under the upgrader", func(t *testing.T) {
		t.Parallel()
		u := newTestUpgrader(t)
		if _, err := u.Listen("tcp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		u.reg.closeAll(false, false)
		u.reg.closeAll(false, false) // again: nothing happens
		if l, err := u.Listen("tcp", "127.0.0.1:0"); err != ErrStopped {
			t.Errorf("Listen on a closed registry = %v, %v; want ErrStopped", l, err)
		}
		if c, err := u.ListenPacket("udp", "127.0.0.1:0"); err != ErrStopped {
			t.Errorf("ListenPacket on a closed registry = %v, %v; want ErrStopped", c, err)
		}
		if err := u.Add("x", tcpListener(t)); err != ErrStopped {
			t.Errorf("Add on a closed registry = %v; want ErrStopped", err)
		}
	})
}

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
