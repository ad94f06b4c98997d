package systemd

import (
	"fmt"
	"os"
	"testing"
)

// helperEnv, when set, makes the test binary run the named helper instead
// of the tests: the real-process tests re-exec it as a child they control.
const helperEnv = "BATON_SYSTEMD_TEST_HELPER"

// helpers are the children the tests can start, registered by the files
// that use them.
var helpers = map[string]func() int{}

func TestMain(m *testing.M) {
	if name := os.Getenv(helperEnv); name != "" {
		h, ok := helpers[name]
		if !ok {
			fmt.Fprintf(os.Stderr, "%s=%q: no such helper\n", helperEnv, name)
			os.Exit(2)
		}
		os.Exit(h())
	}
	os.Exit(m.Run())
}
