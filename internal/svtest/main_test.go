//go:build linux

package svtest

import (
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if err := BecomeSubreaper(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}
