//go:build linux || darwin

package baton

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync/atomic"
)

// ticketsCalled makes TLSSessionTickets once per process, like New: one
// Upgrader per process, one set of keys in its state.
var ticketsCalled atomic.Bool

// TLSSessionTickets makes cfg's TLS session tickets good in every
// generation: a client that got a ticket from this process resumes its
// session with a successor (an abbreviated handshake, no certificate or
// signature), across any number of upgrades. Call it once, before cfg
// serves its first handshake — before Ready, with the listeners:
//
//	if err := upg.TLSSessionTickets(cfg, baton.TicketOptions{}); err != nil {
//		return err
//	}
//
// It installs the predecessor's session ticket keys in cfg (new ones from
// crypto/rand in a first generation, or if the predecessor's cannot be
// read: that is logged and the upgrade goes on), and from then on rotates
// them: a new key encrypts every o.Rotation, the o.Keys newest decrypt.
// Each change is saved at once in the generation state
// ("baton.tls-session-tickets"), so a successor always starts with the
// keys in force. Rotation stops when Exit is closed: this generation then
// takes no new handshakes, and its successor rotates.
//
// The keys go wherever the sockets go from one Upgrader to the next:
// Upgrade, a supervised restart through Options.Control, an interim
// generation. A worker of "baton run" gets its sockets from the master,
// not from its predecessor, and so starts with new keys.
//
// This replaces crypto/tls's own rotation of cfg's keys
// (tls.Config.SetSessionTicketKeys turns it off). Serve cfg itself: a
// Clone made afterwards keeps the keys of that moment and does not rotate,
// and configs that GetConfigForClient returns have keys of their own. One
// cfg per process; its Certificates or GetCertificate serve any number of
// names.
//
// The keys never leave the process except over the handoff socket to the
// successor, which only the two generations hold, and are never logged;
// SECURITY.md says what a leaked key would expose.
func (u *Upgrader) TLSSessionTickets(cfg *tls.Config, o TicketOptions) error {
	switch {
	case cfg == nil:
		return errors.New("baton: TLSSessionTickets: nil *tls.Config")
	case cfg.SessionTicketsDisabled:
		return errors.New("baton: TLSSessionTickets: the tls.Config has SessionTicketsDisabled set")
	}
	every, keep, err := o.resolve()
	if err != nil {
		return err
	}
	if !ticketsCalled.CompareAndSwap(false, true) {
		return errors.New("baton: TLSSessionTickets called more than once in this process")
	}
	b, ok := u.PredecessorState(ticketState)
	t := newTicketRotator(every, keep, b, ok, u.log)
	t.install = cfg.SetSessionTicketKeys
	t.save = func(b []byte) error { return u.setState(ticketState, b) }
	if err := t.start(); err != nil {
		ticketsCalled.Store(false)
		return fmt.Errorf("baton: TLSSessionTickets: %w", err)
	}
	go t.run(u.Exit())
	return nil
}
