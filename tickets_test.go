package baton

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"
)

// seqRand is a deterministic stand-in for crypto/rand: a test sees which
// key is which, and two runs make the same keys.
func seqRand(seed uint64) io.Reader { return rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)}) }

// t0 is the tests' clock origin: a round Unix time, far from zero.
var t0 = time.Unix(1_800_000_000, 0)

// ring returns a valid ring of n keys plus next, rotating every hour, the
// newest started at t0.
func testRing(t testing.TB, n int) ticketRing {
	t.Helper()
	var r ticketRing
	rnd := seqRand(uint64(n))
	for i := n; i >= 1; i-- {
		k, err := newTicketKey(t0.Add(-time.Duration(i-1)*time.Hour), rnd)
		if err != nil {
			t.Fatal(err)
		}
		r.keys = append(r.keys, k)
	}
	// newest first
	for i, j := 0, len(r.keys)-1; i < j; i, j = i+1, j-1 {
		r.keys[i], r.keys[j] = r.keys[j], r.keys[i]
	}
	var err error
	r.next, err = newTicketKey(t0.Add(time.Hour), rnd)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestTicketOptionsResolve(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		o     TicketOptions
		every time.Duration
		keep  int
		bad   bool
	}{
		{TicketOptions{}, DefaultTicketRotation, DefaultTicketKeys, false},
		{TicketOptions{Rotation: time.Minute, Keys: 3}, time.Minute, 3, false},
		{TicketOptions{Rotation: minTicketRotation, Keys: MaxTicketKeys}, minTicketRotation, MaxTicketKeys, false},
		{TicketOptions{Keys: 1}, DefaultTicketRotation, 1, false},
		{TicketOptions{Rotation: time.Millisecond}, 0, 0, true},
		{TicketOptions{Rotation: -time.Hour}, 0, 0, true},
		{TicketOptions{Rotation: maxTicketRotation}, maxTicketRotation, DefaultTicketKeys, false},
		{TicketOptions{Rotation: maxTicketRotation + 1}, 0, 0, true},
		{TicketOptions{Keys: -1}, 0, 0, true},
		{TicketOptions{Keys: MaxTicketKeys + 1}, 0, 0, true},
	} {
		every, keep, err := tc.o.resolve()
		if (err != nil) != tc.bad || every != tc.every || keep != tc.keep {
			t.Errorf("%+v.resolve() = %v, %d, %v; want %v, %d, error %t", tc.o, every, keep, err, tc.every, tc.keep, tc.bad)
		}
	}
}

// The encoding reads back exactly, and its layout is the documented one.
func TestTicketRingEncoding(t *testing.T) {
	t.Parallel()
	for _, n := range []int{1, 2, DefaultTicketKeys, MaxTicketKeys} {
		r := testRing(t, n)
		b := r.encode()
		if len(b) != 2+ticketEntryLen*(n+1) || b[0] != ticketVersion || int(b[1]) != n+1 {
			t.Fatalf("encode of %d keys: %d bytes, header % x; want %d bytes, header %02x %02x", n, len(b), b[:2], 2+ticketEntryLen*(n+1), ticketVersion, n+1)
		}
		if got := int64(binary.BigEndian.Uint64(b[2:])); got != r.next.from.UnixNano() {
			t.Errorf("encode: first time %d; want next's %d", got, r.next.from.UnixNano())
		}
		got, err := parseTicketRing(b)
		if err != nil {
			t.Fatalf("parseTicketRing(encode of %d keys): %v", n, err)
		}
		if !bytes.Equal(got.encode(), b) || !got.next.from.Equal(r.next.from) || got.next.key != r.next.key || len(got.keys) != n {
			t.Errorf("parseTicketRing(encode of %d keys) does not give the ring back", n)
		}
	}
}

// Anything but a well-formed ring of this version is refused, whole.
func TestParseTicketRingStrict(t *testing.T) {
	t.Parallel()
	good := testRing(t, 3).encode()
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(good)) }
	entry := func(i int) int { return 2 + ticketEntryLen*i }
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"version only", []byte{ticketVersion}},
		{"version 0", mod(func(b []byte) []byte { b[0] = 0; return b })},
		{"version 2", mod(func(b []byte) []byte { b[0] = 2; return b })},
		{"no keys", []byte{ticketVersion, 0}},
		{"next only", mod(func(b []byte) []byte { b[1] = 1; return b[:entry(1)] })},
		{"too many keys", append([]byte{ticketVersion, MaxTicketKeys + 2}, make([]byte, ticketEntryLen*(MaxTicketKeys+2))...)},
		{"truncated", good[:len(good)-1]},
		{"trailing byte", append(bytes.Clone(good), 0)},
		{"count says fewer", mod(func(b []byte) []byte { b[1] = 3; return b })},
		{"zero time", mod(func(b []byte) []byte { clear(b[entry(2) : entry(2)+8]); return b })},
		{"time after 2116", mod(func(b []byte) []byte { b[entry(0)] = 0x40; b[entry(0)+7] = 1; return b })},
		{"negative time", mod(func(b []byte) []byte { b[entry(3)] = 0x80; return b })},
		{"times not decreasing", mod(func(b []byte) []byte { copy(b[entry(2):entry(2)+8], b[entry(1):entry(1)+8]); return b })},
		{"next older than current", mod(func(b []byte) []byte {
			copy(b[entry(0):entry(0)+8], b[entry(3):entry(3)+8])
			return b
		})},
		{"all-zero key", mod(func(b []byte) []byte { clear(b[entry(1)+8 : entry(2)]); return b })},
		{"repeated key", mod(func(b []byte) []byte { copy(b[entry(3)+8:entry(4)], b[entry(1)+8:entry(2)]); return b })},
	} {
		if _, err := parseTicketRing(tc.b); !errors.Is(err, errTicketState) {
			t.Errorf("parseTicketRing(%s) = %v; want an error wrapping errTicketState", tc.name, err)
		}
	}
}

// checkRing fails t unless r holds what advance promises at now.
func checkRing(t testing.TB, r *ticketRing, now time.Time, every time.Duration, keep int) {
	t.Helper()
	if len(r.keys) == 0 || len(r.keys) > keep {
		t.Fatalf("after advance: %d keys; want 1 to %d", len(r.keys), keep)
	}
	if !now.Before(r.next.from) || r.next.from.After(now.Add(every)) {
		t.Fatalf("after advance at %v: next at %v; want in (now, now+%v]", now, r.next.from, every)
	}
	if _, err := parseTicketRing(r.encode()); err != nil {
		t.Fatalf("after advance the ring does not encode to valid state: %v", err)
	}
}

// The rotation policy, on an injected clock.
func TestTicketRingAdvance(t *testing.T) {
	t.Parallel()
	const every, keep = time.Hour, 4
	rnd := seqRand(1)
	var r ticketRing

	// A first generation: one key from now, the next an hour on.
	if err := r.advance(t0, every, keep, rnd); err != nil {
		t.Fatal(err)
	}
	checkRing(t, &r, t0, every, keep)
	if len(r.keys) != 1 || !r.keys[0].from.Equal(t0) || !r.next.from.Equal(t0.Add(every)) {
		t.Fatalf("first advance: keys from %v, next from %v; want one from %v, next from %v", r.keys[0].from, r.next.from, t0, t0.Add(every))
	}

	// Before the hour nothing changes.
	first, next := r.keys[0], r.next
	if err := r.advance(t0.Add(every-time.Nanosecond), every, keep, rnd); err != nil {
		t.Fatal(err)
	}
	if len(r.keys) != 1 || r.keys[0] != first || r.next != next {
		t.Fatalf("advance before the hour changed the ring")
	}

	// On the hour the next key encrypts, the old one still decrypts.
	if err := r.advance(t0.Add(every), every, keep, rnd); err != nil {
		t.Fatal(err)
	}
	checkRing(t, &r, t0.Add(every), every, keep)
	if len(r.keys) != 2 || r.keys[0] != next || r.keys[1] != first {
		t.Fatalf("advance on the hour: the next key must encrypt and the first decrypt")
	}

	// Hours later (missed rotations: a stopped process), one key per
	// missed hour, at most keep of them.
	now := t0.Add(3*every + every/2)
	if err := r.advance(now, every, keep, rnd); err != nil {
		t.Fatal(err)
	}
	checkRing(t, &r, now, every, keep)
	if len(r.keys) != keep || !r.keys[0].from.Equal(t0.Add(3*every)) || !r.next.from.Equal(t0.Add(4*every)) {
		t.Fatalf("advance 3.5h on: %d keys, newest from %v, next %v; want %d, %v, %v", len(r.keys), r.keys[0].from, r.next.from, keep, t0.Add(3*every), t0.Add(4*every))
	}
	for i := 1; i < len(r.keys); i++ {
		if !r.keys[i].from.Equal(r.keys[i-1].from.Add(-every)) {
			t.Errorf("key %d from %v; want an hour before key %d (%v)", i, r.keys[i].from, i-1, r.keys[i-1].from)
		}
	}

	// Far later than keep rotations: none of the old keys survives.
	old := map[[32]byte]bool{r.next.key: true}
	for _, k := range r.keys {
		old[k.key] = true
	}
	now = t0.Add(100 * every)
	if err := r.advance(now, every, keep, rnd); err != nil {
		t.Fatal(err)
	}
	checkRing(t, &r, now, every, keep)
	if len(r.keys) != 1 || old[r.keys[0].key] || old[r.next.key] || !r.keys[0].from.Equal(now) {
		t.Fatalf("advance after 100h: want one fresh key from now and a fresh next")
	}

	// A clock set back a day: rotation comes within one hour, not a day,
	// and the keys are kept.
	cur := r.keys[0].key
	now = now.Add(-24 * every)
	if err := r.advance(now, every, keep, rnd); err != nil {
		t.Fatal(err)
	}
	checkRing(t, &r, now, every, keep)
	if r.keys[0].key != cur || !r.next.from.Equal(now.Add(every)) {
		t.Fatalf("advance with the clock set back: the key must stay, next due at now+1h (%v), got %v", now.Add(every), r.next.from)
	}
	if err := r.advance(now.Add(every), every, keep, rnd); err != nil {
		t.Fatal(err)
	}
	if len(r.keys) != 2 || r.keys[1].key != cur {
		t.Fatalf("an hour after the clock was set back: want a rotation")
	}

	// A successor configured to keep fewer keys drops the oldest.
	r = testRing(t, 10)
	if err := r.advance(t0, every, keep, rnd); err != nil {
		t.Fatal(err)
	}
	checkRing(t, &r, t0, every, keep)
	if len(r.keys) != keep {
		t.Errorf("advance with keep %d of a ring of 10: %d keys", keep, len(r.keys))
	}
}

// A predecessor and its successor advancing the same state rotate to the
// same key: the race of two generations side by side is harmless.
func TestTicketRingGenerationsAgree(t *testing.T) {
	t.Parallel()
	const every, keep = time.Hour, 3
	var old ticketRing
	if err := old.advance(t0, every, keep, seqRand(1)); err != nil {
		t.Fatal(err)
	}
	succ, err := parseTicketRing(old.encode())
	if err != nil {
		t.Fatal(err)
	}
	// Different randomness: they share nothing but the state.
	if err := old.advance(t0.Add(every), every, keep, seqRand(2)); err != nil {
		t.Fatal(err)
	}
	if err := succ.advance(t0.Add(every+time.Second), every, keep, seqRand(3)); err != nil {
		t.Fatal(err)
	}
	if old.keys[0].key != succ.keys[0].key || old.keys[1].key != succ.keys[1].key {
		t.Fatal("predecessor and successor rotated to different keys")
	}
	if old.next.key == succ.next.key {
		t.Fatal("two generations made the same new key from different randomness")
	}
}

func TestTicketRingAdvanceRandFails(t *testing.T) {
	t.Parallel()
	var r ticketRing
	if err := r.advance(t0, time.Hour, 3, bytes.NewReader(make([]byte, 10))); err == nil {
		t.Fatal("advance with a failing random source succeeded")
	}
}

// FuzzParseTicketRing: whatever the bytes, parsing never panics, and what
// it accepts encodes back to the same bytes (one encoding per ring) and
// advances to a valid ring.
func FuzzParseTicketRing(f *testing.F) {
	f.Add(testRing(f, 1).encode())
	f.Add(testRing(f, 2).encode())
	f.Add(testRing(f, DefaultTicketKeys).encode())
	f.Add(testRing(f, MaxTicketKeys).encode())
	f.Add([]byte{})
	f.Add([]byte{ticketVersion, 2})
	f.Add(append([]byte{ticketVersion, 2}, make([]byte, 2*ticketEntryLen)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseTicketRing(b)
		if err != nil {
			if !errors.Is(err, errTicketState) {
				t.Fatalf("parseTicketRing: error %v does not wrap errTicketState", err)
			}
			return
		}
		if got := r.encode(); !bytes.Equal(got, b) {
			t.Fatalf("parseTicketRing accepted % x but encodes it as % x", b, got)
		}
		// The longest rotation allowed, from the newest key's time on: the
		// ring may rotate, and no time may overflow. (Times so late that
		// the ring advances past the encoding's last one are not this
		// century's problem.)
		now := r.keys[0].from.Add(time.Minute)
		if now.After(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)) {
			return
		}
		if err := r.advance(now, maxTicketRotation, DefaultTicketKeys, seqRand(0)); err != nil {
			t.Fatal(err)
		}
		checkRing(t, &r, now, maxTicketRotation, DefaultTicketKeys)
	})
}
