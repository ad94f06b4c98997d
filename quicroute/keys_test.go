package quicroute

import (
	"errors"
	"testing"
)

// state is a generation's state as baton passes it on: what one
// generation sets is what the next one's PredecessorState returns.
type state struct {
	pred map[string][]byte
	set  map[string][]byte
}

func (s *state) SetState(name string, b []byte) error {
	if s.set == nil {
		s.set = make(map[string][]byte)
	}
	s.set[name] = append([]byte(nil), b...)
	return nil
}

func (s *state) PredecessorState(name string) ([]byte, bool) {
	b, ok := s.pred[name]
	return b, ok
}

func TestKeysTravel(t *testing.T) {
	first := &state{}
	k1, err := Keys(first)
	if err != nil {
		t.Fatalf("Keys (first generation): %v", err)
	}
	if k1.StatelessReset == ([32]byte{}) || k1.Token == ([32]byte{}) || [32]byte(k1.StatelessReset) == [32]byte(k1.Token) {
		t.Fatalf("Keys (first generation) = %x: want two random keys", *k1)
	}
	second := &state{pred: first.set}
	k2, err := Keys(second)
	if err != nil {
		t.Fatalf("Keys (second generation): %v", err)
	}
	if *k2 != *k1 {
		t.Fatalf("second generation's keys differ from the first's")
	}
	third := &state{pred: second.set}
	if k3, err := Keys(third); err != nil || *k3 != *k1 {
		t.Fatalf("third generation: Keys = %v, want the first generation's", err)
	}
}

func TestKeysBadBlob(t *testing.T) {
	good := (&TransportKeys{}).encode()
	for _, tc := range []struct {
		name string
		b    []byte
	}{
		{"empty", []byte{}},
		{"version 2", append([]byte{2}, good[1:]...)},
		{"short", good[:keysLen-1]},
		{"long", append(good, 0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &state{pred: map[string][]byte{KeysState: tc.b}}
			k, err := Keys(st)
			if !errors.Is(err, ErrBadKeys) {
				t.Fatalf("Keys(%x) = %v, %v; want an error wrapping ErrBadKeys", tc.b, k, err)
			}
			if st.set != nil {
				t.Errorf("Keys(%x) saved state %v despite the error", tc.b, st.set)
			}
		})
	}
}
