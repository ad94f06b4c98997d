package baton

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"
)

// TLS session resumption across generations (Upgrader.TLSSessionTickets).
//
// A server that resumes a client's session skips the certificate, the
// signature and the key exchange of a full handshake: the client shows a
// ticket, which the server encrypted earlier under a session ticket key.
// crypto/tls makes those keys at random in each process, so every client
// of a successor would pay for a full handshake again. Instead the keys
// travel with the generation state, under ticketState: a successor starts
// with exactly the keys its predecessor used, and every ticket the
// predecessor issued stays good.
//
// The keys rotate, as crypto/tls's own do: a new key encrypts new tickets
// every Rotation, the previous ones still decrypt until Keys of them are
// held. Beside them the state carries the next key, already decrypting,
// and the time it starts to encrypt. Two generations run side by side for
// the length of an upgrade, each rotating on its own; with the next key
// known to both, whichever rotates first issues tickets the other can
// read, and both rotate to the same key.

// ticketState names the state blob that carries the ticket keys. Names
// starting "baton." are the library's.
const ticketState = "baton.tls-session-tickets"

const (
	// DefaultTicketRotation is how often a new session ticket key starts
	// encrypting. An hour keeps each key's share of the tickets small
	// (one key opens an hour's tickets), while DefaultTicketKeys of them
	// still cover a day of returning clients.
	DefaultTicketRotation = time.Hour

	// DefaultTicketKeys is how many keys decrypt: the one that encrypts
	// and the 23 before it. A ticket is good for a day (a client that
	// comes back within a day resumes) and no key lives longer, where
	// crypto/tls's own rotation keeps keys for a week: a day bounds the
	// sessions a leaked set of keys exposes.
	DefaultTicketKeys = 24

	// MaxTicketKeys bounds TicketOptions.Keys. crypto/tls tries every key
	// on a ticket it cannot read (one HMAC each), and a client may send
	// any ticket it likes; 64 keeps that far below the cost of the full
	// handshake that follows anyway.
	MaxTicketKeys = 64

	// minTicketRotation keeps a mistyped Rotation from turning the
	// rotation into a busy loop.
	minTicketRotation = 10 * time.Millisecond

	// maxTicketRotation: crypto/tls refuses tickets older than a week, so
	// a key that encrypts for longer only stays exposed for longer.
	maxTicketRotation = 7 * 24 * time.Hour

	// maxTicketNanos bounds the times in the state (Unix nanoseconds,
	// about year 2116), so that adding rotations to them never overflows
	// the int64 they are written in.
	maxTicketNanos = 1 << 62
)

// TicketOptions tunes Upgrader.TLSSessionTickets. The zero value works.
type TicketOptions struct {
	// Rotation is how long each key encrypts new tickets before the next
	// one takes over. From 10ms to 7 days. Defaults to
	// DefaultTicketRotation.
	Rotation time.Duration

	// Keys is how many keys decrypt tickets: the one that encrypts and
	// the most recent ones before it, so a ticket stays good for about
	// Keys-1 to Keys rotations. From 1 to MaxTicketKeys. Defaults to
	// DefaultTicketKeys.
	Keys int
}

// resolve returns the rotation and the number of keys, defaults applied,
// or an error that says which is out of range.
func (o TicketOptions) resolve() (time.Duration, int, error) {
	every, keep := o.Rotation, o.Keys
	if every == 0 {
		every = DefaultTicketRotation
	}
	if keep == 0 {
		keep = DefaultTicketKeys
	}
	if every < minTicketRotation || every > maxTicketRotation {
		return 0, 0, fmt.Errorf("baton: TicketOptions.Rotation %v: want %v to %v", o.Rotation, minTicketRotation, maxTicketRotation)
	}
	if keep < 1 || keep > MaxTicketKeys {
		return 0, 0, fmt.Errorf("baton: TicketOptions.Keys %d: want 1 to %d", o.Keys, MaxTicketKeys)
	}
	return every, keep, nil
}

// ticketKey is one session ticket key and the time it starts (or
// started) to encrypt new tickets.
type ticketKey struct {
	from time.Time // wall clock only: it is compared across processes
	key  [32]byte
}

// ticketRing is the set of keys a generation holds. keys[0] encrypts,
// all of keys and next decrypt; next encrypts from next.from on.
type ticketRing struct {
	next ticketKey
	keys []ticketKey // newest first
}

// The encoding of a ticketRing, ticketVersion 1:
//
//	version  1 byte, 1
//	count    1 byte, 2 to MaxTicketKeys+1: the keys that follow
//	count times:
//	  from   8 bytes, big endian: Unix nanoseconds, 1 to 1<<62
//	  key    32 bytes
//
// next comes first, then keys, newest first: from strictly decreases.
// Keys are distinct and never all zero. Anything else — another version,
// a length that is not exactly 2+40*count — is refused whole: a successor
// that cannot read the keys makes its own (clients do one full handshake)
// rather than guess.
const (
	ticketVersion  = 1
	ticketEntryLen = 8 + 32
)

// errTicketState is wrapped by every error of parseTicketRing.
var errTicketState = errors.New("baton: malformed session ticket state")

// encode returns r in the encoding above.
func (r ticketRing) encode() []byte {
	b := make([]byte, 0, 2+ticketEntryLen*(1+len(r.keys)))
	b = append(b, ticketVersion, byte(1+len(r.keys)))
	for _, k := range append([]ticketKey{r.next}, r.keys...) {
		b = binary.BigEndian.AppendUint64(b, uint64(k.from.UnixNano()))
		b = append(b, k.key[:]...)
	}
	return b
}

// parseTicketRing decodes b strictly.
func parseTicketRing(b []byte) (ticketRing, error) {
	var r ticketRing
	if len(b) < 2 {
		return r, fmt.Errorf("%w: %d bytes", errTicketState, len(b))
	}
	if b[0] != ticketVersion {
		return r, fmt.Errorf("%w: version %d, want %d", errTicketState, b[0], ticketVersion)
	}
	n := int(b[1])
	if n < 2 || n > MaxTicketKeys+1 {
		return r, fmt.Errorf("%w: %d keys, want 2 to %d", errTicketState, n, MaxTicketKeys+1)
	}
	if len(b) != 2+ticketEntryLen*n {
		return r, fmt.Errorf("%w: %d bytes for %d keys, want %d", errTicketState, len(b), n, 2+ticketEntryLen*n)
	}
	all := make([]ticketKey, n)
	seen := make(map[[32]byte]bool, n)
	for i := range all {
		e := b[2+ticketEntryLen*i:]
		ns := int64(binary.BigEndian.Uint64(e))
		if ns <= 0 || ns > maxTicketNanos {
			return r, fmt.Errorf("%w: key %d: time %d", errTicketState, i, ns)
		}
		all[i].from = time.Unix(0, ns)
		copy(all[i].key[:], e[8:ticketEntryLen])
		if i > 0 && !all[i].from.Before(all[i-1].from) {
			return r, fmt.Errorf("%w: key %d is not older than key %d", errTicketState, i, i-1)
		}
		if all[i].key == [32]byte{} {
			return r, fmt.Errorf("%w: key %d is all zeros", errTicketState, i)
		}
		if seen[all[i].key] {
			return r, fmt.Errorf("%w: key %d repeats an earlier one", errTicketState, i)
		}
		seen[all[i].key] = true
	}
	r.next, r.keys = all[0], all[1:]
	return r, nil
}

// newTicketKey returns a fresh key from rnd that encrypts from from on.
func newTicketKey(from time.Time, rnd io.Reader) (ticketKey, error) {
	k := ticketKey{from: from}
	if _, err := io.ReadFull(rnd, k.key[:]); err != nil {
		return k, fmt.Errorf("baton: new session ticket key: %w", err)
	}
	return k, nil
}

// advance brings r to now: the next key starts encrypting once its time
// has come (as many times as rotations were missed), a fresh next key
// follows it every rotation, and only the keep newest keys are kept. An
// empty ring (a first generation, or unusable state) gets its first key.
// Afterwards keys is not empty and now < next.from <= now+every.
func (r *ticketRing) advance(now time.Time, every time.Duration, keep int, rnd io.Reader) error {
	now = now.Round(0) // wall clock: that is what crosses processes
	if r.next.from.IsZero() || now.Sub(r.next.from) >= time.Duration(keep)*every {
		// Nothing yet, or every key we hold would have been pushed out by
		// the rotations missed since (a generation stopped for a day, a
		// clock set forward): start afresh rather than make them all.
		k, err := newTicketKey(now, rnd)
		if err != nil {
			return err
		}
		r.next, r.keys = k, nil
	}
	if limit := now.Add(every); r.next.from.After(limit) {
		// The next rotation lies further ahead than one rotation: the
		// clock was set back, or the predecessor's ran ahead. A wrong
		// clock may postpone rotation by one rotation at most. Keys that
		// claim to start after it are taken to have started just
		// before, newest first, so the order holds.
		r.next.from = limit
		for i := range r.keys {
			limit = limit.Add(-time.Nanosecond)
			if !r.keys[i].from.Before(limit) {
				r.keys[i].from = limit
			}
			limit = r.keys[i].from
		}
	}
	for !now.Before(r.next.from) {
		k, err := newTicketKey(r.next.from.Add(every), rnd)
		if err != nil {
			return err
		}
		r.keys = append([]ticketKey{r.next}, r.keys...)
		r.next = k
	}
	if len(r.keys) > keep {
		r.keys = r.keys[:keep]
	}
	return nil
}

// tlsKeys returns the keys for tls.Config.SetSessionTicketKeys: the one
// that encrypts first, then every other that decrypts, next included.
func (r ticketRing) tlsKeys() [][32]byte {
	out := make([][32]byte, 0, len(r.keys)+1)
	for _, k := range r.keys {
		out = append(out, k.key)
	}
	return append(out, r.next.key)
}

// ticketRotator keeps one tls.Config's ticket keys rotating and the
// generation state current. Its goroutine (run) owns ring.
type ticketRotator struct {
	every   time.Duration
	keep    int
	now     func() time.Time
	rand    io.Reader
	install func([][32]byte)   // tls.Config.SetSessionTicketKeys
	save    func([]byte) error // Upgrader.SetState(ticketState, …)
	log     *slog.Logger
	ring    ticketRing
}

// start brings the ring (the predecessor's, or empty) up to date, saves
// it for a successor and installs it. Saved first: the state never lags
// behind the keys in use. Nothing is installed if either fails.
func (t *ticketRotator) start() error {
	if err := t.ring.advance(t.now(), t.every, t.keep, t.rand); err != nil {
		return err
	}
	if err := t.save(t.ring.encode()); err != nil {
		return err
	}
	t.install(t.ring.tlsKeys())
	return nil
}

// run rotates whenever the next key is due, until done is closed. A
// failure is logged and retried shortly: the keys in force keep serving
// meanwhile.
func (t *ticketRotator) run(done <-chan struct{}) {
	// A timer set for the next key's time, not a ticker: the time comes
	// from the state, so a successor rotates when its predecessor would
	// have, and a clock that jumps is caught up with at the next firing.
	timer := time.NewTimer(t.wait())
	defer timer.Stop()
	for {
		select {
		case <-done:
			return
		case <-timer.C:
		}
		if err := t.rotate(); err != nil {
			t.log.Error("TLS session ticket keys: rotation failed; the current keys stay in force", "err", err)
		}
		timer.Reset(t.wait())
	}
}

// rotate advances the ring, saves it and installs it. If it cannot be
// saved (the application's blobs left no room under MaxState) the new
// keys are installed anyway: rotating is the point. A successor then
// gets the state saved before, whose next key is the one that encrypts
// now, so this generation's tickets still resume there until it rotates
// again.
func (t *ticketRotator) rotate() error {
	if err := t.ring.advance(t.now(), t.every, t.keep, t.rand); err != nil {
		return err
	}
	err := t.save(t.ring.encode())
	t.install(t.ring.tlsKeys())
	if err != nil {
		return fmt.Errorf("keeping them for a successor: %w", err)
	}
	t.log.Debug("TLS session ticket keys rotated", "keys", len(t.ring.keys)+1, "next", t.ring.next.from)
	return nil
}

// wait is how long until the next key is due, at most one rotation: a
// timer started on one clock and compared on another (the wall clock,
// which the state uses) must not oversleep a clock set back. At least
// minTicketRotation, so that a rotation that failed (and left the next
// key due) is retried at a pace, not in a loop.
func (t *ticketRotator) wait() time.Duration {
	d := t.ring.next.from.Sub(t.now())
	return min(max(d, minTicketRotation), t.every)
}

// newTicketRotator returns a rotator on the real clock and crypto/rand,
// starting from the predecessor's state b (ok false: none). State it
// cannot read is logged and replaced: its clients do one full handshake,
// and the upgrade goes on.
func newTicketRotator(every time.Duration, keep int, b []byte, ok bool, log *slog.Logger) *ticketRotator {
	t := &ticketRotator{every: every, keep: keep, now: time.Now, rand: rand.Reader, log: log}
	if !ok {
		return t
	}
	r, err := parseTicketRing(b)
	if err != nil {
		log.Warn("TLS session ticket keys: the predecessor's are unusable, starting with new ones (its clients do a full handshake once)", "err", err)
		return t
	}
	t.ring = r
	log.Info("TLS session ticket keys taken over from the predecessor", "keys", len(r.keys)+1)
	return t
}
