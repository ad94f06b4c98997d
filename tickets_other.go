//go:build !linux && !darwin

package baton

import "crypto/tls"

// TLSSessionTickets returns ErrNotSupported on this system.
func (u *Upgrader) TLSSessionTickets(cfg *tls.Config, o TicketOptions) error {
	return ErrNotSupported
}
