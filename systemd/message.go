package systemd

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"
)

const (
	// MaxMessageSize is the largest notification systemd reads: its
	// receive buffer is PIPE_BUF bytes, and it drops a longer datagram
	// whole.
	MaxMessageSize = 4096

	// MaxFDs is the most descriptors one notification can carry, the
	// kernel's SCM_MAX_FD.
	MaxFDs = 253

	// MaxFDNameLen is the longest name systemd accepts for a descriptor
	// (FDNAME= and LISTEN_FDNAMES, FDNAME_MAX in systemd).
	MaxFDNameLen = 255
)

// buildMessage encodes fields, each "KEY=VALUE", as one notification: the
// fields joined by newlines.
//
// It refuses what systemd would drop or misread, so that a mistake is an
// error here rather than a notification that silently goes nowhere:
//
//   - no field at all, or a message longer than MaxMessageSize;
//   - a field without "=", or whose key is not [A-Za-z_][A-Za-z0-9_]*;
//   - a value with a newline (it would start another field), a NUL byte
//     (systemd drops such a message) or invalid UTF-8;
//   - an FDNAME= value that is not a valid descriptor name (see
//     validFDName), or empty;
//   - BARRIER=1 next to any other field: systemd then ignores everything.
func buildMessage(fields []string) ([]byte, error) {
	if len(fields) == 0 {
		return nil, errors.New("systemd: empty notification")
	}
	size := len(fields) - 1 // the newlines
	for _, f := range fields {
		size += len(f)
	}
	if size > MaxMessageSize {
		return nil, fmt.Errorf("systemd: notification of %d bytes, more than the %d systemd reads", size, MaxMessageSize)
	}
	for _, f := range fields {
		key, value, ok := strings.Cut(f, "=")
		if !ok {
			return nil, fmt.Errorf("systemd: notification field %q is not KEY=VALUE", f)
		}
		if !validKey(key) {
			return nil, fmt.Errorf("systemd: notification field %q: bad key", f)
		}
		if i := strings.IndexAny(value, "\n\x00"); i >= 0 {
			return nil, fmt.Errorf("systemd: notification field %s: value contains %q", key, value[i])
		}
		if !utf8.ValidString(value) {
			return nil, fmt.Errorf("systemd: notification field %s: value is not UTF-8", key)
		}
		if key == "FDNAME" {
			if err := checkFDName(value); err != nil {
				return nil, err
			}
		}
		if f == "BARRIER=1" && len(fields) > 1 {
			return nil, errors.New("systemd: BARRIER=1 must be the only field of its notification")
		}
	}
	return []byte(strings.Join(fields, "\n")), nil
}

// validKey reports whether key looks like an environment variable name,
// as every field systemd knows does.
func validKey(key string) bool {
	if key == "" || ('0' <= key[0] && key[0] <= '9') {
		return false
	}
	for i := 0; i < len(key); i++ {
		c := key[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validFDName reports whether systemd accepts name for a descriptor
// (fdname_is_valid): at most MaxFDNameLen printable ASCII characters, no
// ':' (the separator in LISTEN_FDNAMES). systemd allows the empty name;
// the calls that name a descriptor here (FDStore, ListenEnv) do not, see
// checkFDName.
func validFDName(name string) bool {
	if len(name) > MaxFDNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < ' ' || c > '~' || c == ':' {
			return false
		}
	}
	return true
}

// checkFDName is validFDName for a name this package sends, which must not
// be empty: an empty FDNAME= would come back as an empty entry in
// LISTEN_FDNAMES, and a lone empty name as no LISTEN_FDNAMES at all.
func checkFDName(name string) error {
	if name == "" {
		return errors.New("systemd: empty descriptor name")
	}
	if !validFDName(name) {
		return fmt.Errorf("systemd: bad descriptor name %q: want at most %d printable ASCII characters other than ':'", name, MaxFDNameLen)
	}
	return nil
}
