package baton_test

import (
	"os"
	"strings"
	"testing"
)

// The README's server is examples/hello, word for word, so it compiles.
func TestREADMEShowsHelloExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	code, err := os.ReadFile("examples/hello/main.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "```go\n"+string(code)+"```\n") {
		t.Errorf("README.md does not show examples/hello/main.go verbatim; copy it over")
	}
}
