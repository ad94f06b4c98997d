package environ

import (
	"slices"
	"strings"
)

// name returns the name of entry: its text before the first '='.
func name(entry string) string {
	n, _, _ := strings.Cut(entry, "=")
	return n
}

// Without returns env without the entries named names, in order.
func Without(env []string, names ...string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if !slices.Contains(names, name(kv)) {
			out = append(out, kv)
		}
	}
	return out
}

// WithoutPrefix returns env without the entries whose name begins with
// one of prefixes ("LISTEN_" drops LISTEN_FDS, LISTEN_PID, ...), in order.
func WithoutPrefix(env []string, prefixes ...string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		n := name(kv)
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(n, p) }) {
			out = append(out, kv)
		}
	}
	return out
}

// Lookup returns the value of the last entry named name in env — the one
// a process sees, as os/exec keeps the last of duplicates — and whether
// there is one.
func Lookup(env []string, name string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if n, v, _ := strings.Cut(env[i], "="); n == name {
			return v, true
		}
	}
	return "", false
}
