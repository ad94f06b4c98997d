//go:build !linux && !darwin

package baton

// Hurry returns nil on this system, never closed.
func (u *Upgrader) Hurry() <-chan struct{} { return nil }
