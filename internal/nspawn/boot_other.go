//go:build !linux

package nspawn

import (
	"runtime"
	"testing"
)

// sysState is empty where nothing can be booted.
type sysState struct{}

func (s *sysState) running() bool { return false }

// Boot skips t, or fails it if BATON_REQUIRE_INTEGRATION=1: systemd-nspawn
// runs on Linux only.
func Boot(t testing.TB, opts Options) *Container {
	t.Helper()
	unavailable(t, "systemd-nspawn needs Linux, not %s", runtime.GOOS)
	return nil
}

// EnsureRootfs skips t, or fails it if BATON_REQUIRE_INTEGRATION=1: there
// is nothing to boot a rootfs with but on Linux.
func EnsureRootfs(t testing.TB, release Release) string {
	t.Helper()
	unavailable(t, "systemd-nspawn needs Linux, not %s", runtime.GOOS)
	return ""
}
