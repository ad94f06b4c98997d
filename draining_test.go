//go:build linux || darwin

package baton

import (
	"slices"
	"testing"
)

func TestParseLineage(t *testing.T) {
	t.Parallel()
	ids := []genID{{1, 100, 5000}, {3, 102, 5100}, {7, 99, 6000}}
	got, err := parseLineage(encodeLineage(ids))
	if err != nil || !slices.Equal(got, ids) {
		t.Errorf("parseLineage(encodeLineage(%v)) = %v, %v; want them back", ids, got, err)
	}
	if got, err := parseLineage(nil); err != nil || got != nil {
		t.Errorf("parseLineage(nil) = %v, %v; want nothing, nil", got, err)
	}
	for _, bad := range []string{
		"1 100 5000",            // no newline
		"1 100\n",               // a field short
		"1 100 5000 7\n",        // a field more
		"0 100 5000\n",          // generation 0
		"1 0 5000\n",            // pid 0
		"1 -3 5000\n",           // negative pid
		"01 100 5000\n",         // not canonical
		"1 100 +5000\n",         // not canonical
		"1  100 5000\n",         // two spaces
		"2 100 5000\n1 101 5\n", // descending
		"2 100 5000\n2 101 5\n", // repeated
		"1 100 x\n",
	} {
		if got, err := parseLineage([]byte(bad)); err == nil {
			t.Errorf("parseLineage(%q) = %v, nil; want an error", bad, got)
		}
	}
}

func FuzzParseLineage(f *testing.F) {
	f.Add([]byte("1 100 5000\n3 102 5100\n"))
	f.Add([]byte("1 100 5000"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ids, err := parseLineage(b)
		if err != nil {
			return
		}
		// What parses is canonical: it encodes back to the same bytes.
		if again := encodeLineage(ids); string(again) != string(b) {
			t.Errorf("parseLineage(%q) = %v, which encodes to %q", b, ids, again)
		}
	})
}

func TestJoinLineage(t *testing.T) {
	t.Parallel()
	dead := map[int]bool{101: true}
	alive := func(id genID) bool { return !dead[id.PID] }
	self := genID{5, 200, 9000}
	for _, tc := range []struct {
		name      string
		ancestors []genID
		want      []genID
	}{
		{"first generation", nil, []genID{self}},
		{"a middle generation exited first",
			[]genID{{1, 100, 1}, {2, 101, 2}, {3, 102, 3}, {4, 103, 4}},
			[]genID{{1, 100, 1}, {3, 102, 3}, {4, 103, 4}, self}},
		{"an entry naming this very process (re-executed in place) is dropped",
			[]genID{{1, 100, 1}, {3, 200, 9000}},
			[]genID{{1, 100, 1}, self}},
		{"one process re-executed in place counts once, as its newest generation",
			[]genID{{1, 100, 1}, {2, 102, 2}, {3, 100, 1}},
			[]genID{{2, 102, 2}, {3, 100, 1}, self}},
		{"generations not older than this one are not ancestors",
			[]genID{{1, 100, 1}, {5, 104, 5}, {6, 105, 6}},
			[]genID{{1, 100, 1}, self}},
	} {
		if got := joinLineage(tc.ancestors, self, alive); !slices.Equal(got, tc.want) {
			t.Errorf("%s: joinLineage(%v) = %v; want %v", tc.name, tc.ancestors, got, tc.want)
		}
	}
	var many []genID
	for i := range maxLineage + 10 {
		many = append(many, genID{i + 1, 1000 + i, uint64(i)})
	}
	got := joinLineage(many, genID{maxLineage + 20, 5, 5}, alive)
	if len(got) != maxLineage || got[0].Gen != 12 {
		t.Errorf("joinLineage of %d ancestors kept %d from generation %d; want the newest %d", len(many), len(got), got[0].Gen, maxLineage)
	}
}

func TestBeyondBound(t *testing.T) {
	t.Parallel()
	ids := []genID{{1, 1, 1}, {2, 2, 2}, {3, 3, 3}, {4, 4, 4}, {5, 5, 5}}
	for _, tc := range []struct {
		bound int
		want  []genID
	}{
		{0, nil},
		{5, nil},
		{9, nil},
		{4, ids[:1]},
		{2, ids[:3]},
		{1, ids[:4]},
	} {
		if got := beyondBound(ids, tc.bound); !slices.Equal(got, tc.want) {
			t.Errorf("beyondBound(5 draining, %d) = %v; want %v", tc.bound, got, tc.want)
		}
	}
}
