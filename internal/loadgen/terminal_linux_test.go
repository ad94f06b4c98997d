package loadgen

import (
	"os"
	"testing"
)

func TestIsTerminalPTY(t *testing.T) {
	t.Parallel()
	// The master side of a pseudo-terminal answers TCGETS like a terminal.
	f, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to test with: %v", err)
	}
	defer f.Close()
	if !IsTerminal(f) {
		t.Errorf("IsTerminal(/dev/ptmx) = false, want true")
	}
}
