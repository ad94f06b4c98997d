package main

import (
	"fmt"
	"io"
	"strings"
)

// Exit statuses, documented in doc.go.
const (
	exitOK      = 0 // the command did what was asked; for demo: zero failures
	exitFailed  = 1 // it ran, and something failed (a request, an upgrade)
	exitUsage   = 2 // bad command line
	exitNoStart = 3 // it could not even start (the server never answered)
)

// ui is all the CLI's output to a person: one place, one "baton:" prefix.
type ui struct {
	stdout, stderr io.Writer
}

// errorf reports an error, with optional hints on how to fix it.
func (u ui) errorf(format string, args ...any) {
	fmt.Fprintf(u.stderr, "baton: error: "+format+"\n", args...)
}

func (u ui) hint(format string, args ...any) {
	fmt.Fprintf(u.stderr, "baton: hint: "+format+"\n", args...)
}

func (u ui) infof(format string, args ...any) {
	fmt.Fprintf(u.stderr, "baton: "+format+"\n", args...)
}

// tail returns the last n lines of s, indented, for showing a log.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return "    " + strings.Join(lines, "\n    ")
}
