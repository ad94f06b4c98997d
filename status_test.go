package baton

import (
	"strings"
	"testing"
	"time"
)

func TestStatsCodec(t *testing.T) {
	s := serviceStats{Upgrades: UpgradeStats{OK: 3, Failed: 2, LastError: "boom", LastErrorAt: time.Unix(1700000000, 5).UTC()}, Restarts: 1}
	got, err := parseStats(encodeStats(s))
	if err != nil || got != s {
		t.Fatalf("round trip of %+v = %+v, %v", s, got, err)
	}
	long := serviceStats{Upgrades: UpgradeStats{LastError: strings.Repeat("x", 2*maxLastError)}}
	if got, err := parseStats(encodeStats(long)); err != nil || len(got.Upgrades.LastError) != maxLastError {
		t.Errorf("an overlong last error is cut to %d bytes on the way out: %d, %v", maxLastError, len(got.Upgrades.LastError), err)
	}
	for _, bad := range []string{
		``,
		`{}{}`,
		`{"upgrades":{"ok":-1}}`,
		`{"restarts":-2}`,
		`{"upgrades":{"ok":1},"surprise":1}`,
		`{"upgrades":{"last_error":"` + strings.Repeat("y", maxLastError+1) + `"}}`,
		`[1]`,
	} {
		if _, err := parseStats([]byte(bad)); err == nil {
			t.Errorf("parseStats(%.40q) accepted it", bad)
		}
	}
}

// FuzzParseStats: whatever parseStats accepts encodes back to what parses
// the same.
func FuzzParseStats(f *testing.F) {
	f.Add(encodeStats(serviceStats{Upgrades: UpgradeStats{OK: 1, Failed: 1, LastError: "e", LastErrorAt: time.Unix(1, 0)}, Restarts: 2}))
	f.Add([]byte(`{"upgrades":{"ok":0}}`))
	f.Add([]byte(`{"upgrades":{"ok":1e3}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parseStats(b)
		if err != nil {
			return
		}
		again, err := parseStats(encodeStats(s))
		if err != nil || !again.Upgrades.LastErrorAt.Equal(s.Upgrades.LastErrorAt) {
			t.Fatalf("%q parsed to %+v, which does not round-trip: %+v, %v", b, s, again, err)
		}
		again.Upgrades.LastErrorAt = s.Upgrades.LastErrorAt
		if again != s {
			t.Fatalf("%q parsed to %+v, which round-trips to %+v", b, s, again)
		}
	})
}
