package quicroute

import (
	"testing"
)

func TestCIDGenerator(t *testing.T) {
	g := NewCIDGenerator(0x01020304)
	if n := g.ConnectionIDLen(); n != CIDLen {
		t.Fatalf("ConnectionIDLen() = %d, want %d", n, CIDLen)
	}
	seen := make(map[string]bool)
	for range 1000 {
		id, err := g.GenerateConnectionID()
		if err != nil {
			t.Fatalf("GenerateConnectionID: %v", err)
		}
		b := id.Bytes()
		if len(b) != CIDLen {
			t.Fatalf("GenerateConnectionID() = % x: %d bytes, want %d", b, len(b), CIDLen)
		}
		if gen, ok := GenerationOf(b); !ok || gen != 0x01020304 {
			t.Fatalf("GenerationOf(% x) = %#x, %v; want 0x01020304, true", b, gen, ok)
		}
		if route, gen := Classify(short(b), CIDLen); route != Named || gen != 0x01020304 {
			t.Fatalf("Classify(short header for % x) = %v, %#x", b, route, gen)
		}
		if seen[string(b)] {
			t.Fatalf("GenerateConnectionID() repeated % x", b)
		}
		seen[string(b)] = true
	}
	if _, ok := GenerationOf(make([]byte, 8)); ok {
		t.Errorf("GenerationOf(8 bytes) says it names a generation")
	}
}
