package server

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestStateRoundTrip(t *testing.T) {
	t.Parallel()
	for _, st := range []connState{
		{},
		{Answered: 1},
		{Answered: 1<<64 - 1, Pending: []byte{0x81, 0x85}},
		{Pending: bytes.Repeat([]byte{7}, maxPending)},
	} {
		b, err := st.encode()
		if err != nil {
			t.Fatalf("encode(%d pending) = %v", len(st.Pending), err)
		}
		got, err := decodeState(b)
		if err != nil || got.Answered != st.Answered || !bytes.Equal(got.Pending, st.Pending) {
			t.Errorf("decodeState(encode(%d, %d pending)) = %d, %d pending, %v", st.Answered, len(st.Pending), got.Answered, len(got.Pending), err)
		}
		if len(b) > 64<<10 {
			t.Errorf("a state of %d bytes is over baton.MaxConnState", len(b))
		}
	}
	if _, err := (connState{Pending: make([]byte, maxPending+1)}).encode(); err == nil {
		t.Error("encode of too many pending bytes succeeded")
	}
}

func TestDecodeStateRejects(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "0 bytes"},
		{"version 2", []byte{2, 0, 0, 0}, "version 2"},
		{"compression", []byte{1, 1, 0, 0}, "extensions"},
		{"no count", []byte{1, 0}, "count"},
		{"short pending", []byte{1, 0, 0, 2, 'x'}, "length"},
		{"trailing byte", []byte{1, 0, 0, 0, 'x'}, "length"},
		{"overlong varint", []byte{1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0}, "count"},
	} {
		_, err := decodeState(tc.b)
		if !errors.Is(err, errBadState) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("decodeState(%s %x) = %v; want errBadState saying %q", tc.name, tc.b, err, tc.want)
		}
	}
}

// Whatever it is given, decodeState returns a state that encodes back to
// the same bytes, or an error.
func FuzzDecodeState(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0})
	f.Add([]byte{1, 0, 42, 2, 0x81, 0x80})
	f.Add([]byte{2, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := decodeState(b)
		if err != nil {
			return
		}
		again, err := st.encode()
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("decodeState(%x) = %+v, which encodes to %x, %v", b, st, again, err)
		}
	})
}
