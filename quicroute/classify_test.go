package quicroute

import (
	"encoding/binary"
	"testing"
)

// cidFor is a connection ID as CIDGenerator makes them, with a fixed
// random part.
func cidFor(gen uint32) []byte {
	b := make([]byte, CIDLen)
	binary.BigEndian.PutUint32(b, gen)
	for i := genLen; i < CIDLen; i++ {
		b[i] = byte(0xa0 + i)
	}
	return b
}

// long builds a long-header packet of version v and packet type bits typ
// (as they are on the wire, 0..3), followed by some payload.
func long(v uint32, typ byte, dcid, scid []byte) []byte {
	b := []byte{0xc0 | typ<<4}
	b = binary.BigEndian.AppendUint32(b, v)
	b = append(b, byte(len(dcid)))
	b = append(b, dcid...)
	b = append(b, byte(len(scid)))
	b = append(b, scid...)
	return append(b, make([]byte, 40)...)
}

// short builds a short-header packet for dcid.
func short(dcid []byte) []byte {
	b := []byte{0x40 | 0x01}
	b = append(b, dcid...)
	return append(b, make([]byte, 30)...)
}

func TestClassify(t *testing.T) {
	client8 := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	for _, tc := range []struct {
		name  string
		b     []byte
		route Route
		gen   uint32
	}{
		{"empty", nil, Local, 0},
		{"short header gen 7", short(cidFor(7)), Named, 7},
		{"short header gen 0", short(cidFor(0)), Named, 0},
		{"short header max gen", short(cidFor(1<<32 - 1)), Named, 1<<32 - 1},
		{"short header too short", short(cidFor(7))[:CIDLen], Local, 0},
		{"short header just long enough", short(cidFor(7))[:1+CIDLen], Named, 7},
		{"no fixed bit", append([]byte{0x01}, cidFor(7)...), Local, 0},
		{"v1 initial, client dcid", long(version1, 0, client8, nil), Newest, 0},
		{"v1 initial, dcid naming gen 3", long(version1, 0, cidFor(3), client8), NewestOrNamed, 3},
		{"v1 0-RTT, dcid naming gen 4", long(version1, 1, cidFor(4), client8), NewestOrNamed, 4},
		{"v2 initial, dcid naming gen 5", long(version2, 1, cidFor(5), client8), NewestOrNamed, 5},
		{"v1 0-RTT", long(version1, 1, client8, client8), Newest, 0},
		{"v1 handshake gen 3", long(version1, 2, cidFor(3), client8), Named, 3},
		{"v1 handshake, foreign dcid length", long(version1, 2, client8, client8), Local, 0},
		{"v1 retry", long(version1, 3, cidFor(3), client8), Local, 0},
		{"v2 initial", long(version2, 1, client8, nil), Newest, 0},
		{"v2 0-RTT", long(version2, 2, client8, nil), Newest, 0},
		{"v2 handshake gen 9", long(version2, 3, cidFor(9), client8), Named, 9},
		{"v2 retry", long(version2, 0, cidFor(9), client8), Local, 0},
		{"unknown version", long(0x1a2a3a4a, 2, cidFor(3), client8), Local, 0},
		{"version negotiation", long(0, 2, cidFor(3), client8), Local, 0},
		{"long header cut in the version", []byte{0xc0, 0, 0}, Local, 0},
		{"long header cut in the dcid", long(version1, 2, cidFor(3), nil)[:6+CIDLen-1], Local, 0},
		{"long header dcid length 21", append([]byte{0xe0, 0, 0, 0, 1, 21}, make([]byte, 60)...), Local, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			route, gen := Classify(tc.b, CIDLen)
			if route != tc.route || gen != tc.gen {
				t.Errorf("Classify(% x) = %v, %d; want %v, %d", tc.b, route, gen, tc.route, tc.gen)
			}
		})
	}
}

func TestClassifyBadCIDLen(t *testing.T) {
	for _, n := range []int{-1, 0, 3, 21} {
		if route, _ := Classify(short(cidFor(7)), n); route != Local {
			t.Errorf("Classify(short header, cidLen %d) = %v, want Local", n, route)
		}
	}
}

// FuzzClassify: Classify never panics; a packet built with a connection
// ID naming a generation classifies to it; an Initial or 0-RTT packet
// whose destination connection ID could not be ours is always for the
// newest, whatever else it says.
func FuzzClassify(f *testing.F) {
	f.Add([]byte{}, uint32(1), byte(0), []byte{})
	f.Add(short(cidFor(5)), uint32(5), byte(1), []byte{1, 2})
	f.Add(long(version1, 2, cidFor(3), nil), uint32(3), byte(2), []byte{9})
	f.Add(long(version2, 1, []byte{1, 2, 3, 4, 5, 6, 7, 8}, nil), uint32(0), byte(3), []byte{})
	f.Fuzz(func(t *testing.T, raw []byte, gen uint32, kind byte, tail []byte) {
		// Arbitrary bytes: any answer, no panic, and a generation only
		// with Named and NewestOrNamed.
		if route, g := Classify(raw, CIDLen); route != Named && route != NewestOrNamed && g != 0 {
			t.Fatalf("Classify(% x) = %v with generation %d", raw, route, g)
		}
		// Any long header of version 1 or 2 whose type is Initial or
		// 0-RTT is Newest, whatever follows, unless its destination
		// connection ID has our length.
		if len(raw) >= 6 && int(raw[5]) <= maxCIDLen && int(raw[5]) != CIDLen && len(raw) >= 6+int(raw[5]) {
			b := append([]byte(nil), raw...)
			v, typ := uint32(version1), kind&1
			if kind&2 != 0 {
				v, typ = version2, typ+1
			}
			b[0] = 0x80 | typ<<4 | b[0]&0x4f
			binary.BigEndian.PutUint32(b[1:], v)
			if route, _ := Classify(b, CIDLen); route != Newest {
				t.Fatalf("Classify(initial or 0-RTT % x) = %v, want newest", b, route)
			}
		}
		// A packet carrying a connection ID for gen.
		cid := cidFor(gen)
		copy(cid[genLen:], tail)
		var b []byte
		want := Named
		switch kind % 5 {
		case 0:
			b = append(short(cid)[:1+CIDLen], tail...)
			b[0] = 0x40 | kind&0x3f
		case 1:
			b = append(long(version1, 2, cid, tail[:min(len(tail), 20)]), tail...)
		case 2:
			b = append(long(version2, 3, cid, tail[:min(len(tail), 20)]), tail...)
		case 3:
			b = append(long(version1, kind>>7, cid, tail[:min(len(tail), 20)]), tail...)
			want = NewestOrNamed
		case 4:
			b = append(long(version2, 1+kind>>7, cid, tail[:min(len(tail), 20)]), tail...)
			want = NewestOrNamed
		}
		if route, g := Classify(b, CIDLen); route != want || g != gen {
			t.Fatalf("Classify(% x) = %v, %d; want %v %d", b, route, g, want, gen)
		}
	})
}
