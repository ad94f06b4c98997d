package supervisor

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
)

// A ListenSpec is one socket the master opens: the value of a --listen
// flag, parsed by ParseListen.
type ListenSpec struct {
	// Name is the descriptor's name in LISTEN_FDNAMES, or "" for none
	// (the worker then sees "unknown", as sd_listen_fds_with_names says
	// for a socket without a name).
	Name string
	// Network is what net.Listen or net.ListenPacket takes: tcp, tcp4,
	// tcp6, udp, udp4, udp6 or unix.
	Network string
	// Address is host:port for tcp and udp, a path or "@abstract" for
	// unix.
	Address string
}

// String gives the spec back in the form ParseListen reads.
func (s ListenSpec) String() string {
	v := s.Network + "://" + s.Address
	if s.Name != "" {
		v = s.Name + "=" + v
	}
	return v
}

// Packet reports whether the socket is a datagram socket (udp), opened
// with ListenPacket, rather than a listening stream socket.
func (s ListenSpec) Packet() bool { return strings.HasPrefix(s.Network, "udp") }

// maxNameLen bounds a socket's name, as systemd's FileDescriptorName= is.
const maxNameLen = 255

// maxAddressLen bounds an address: longer than any host name or socket
// path can be.
const maxAddressLen = 4096

var errEmptyListen = &ListenError{Reason: "empty listen address"}

// ParseListen parses a listen address: [NAME=]SCHEME://ADDRESS, where
// SCHEME is tcp, tcp4, tcp6, udp, udp4, udp6 or unix, ADDRESS is
// [HOST]:PORT for the first six (an empty host is every address) and a
// path or @abstract name for unix, and NAME, at most maxNameLen of the
// characters [A-Za-z0-9_.-], names the descriptor for the worker. For
// example "tcp://127.0.0.1:8080", "web=tcp://:8080",
// "unix:///run/app.sock". It is pure: nothing is opened or looked up.
func ParseListen(s string) (ListenSpec, error) {
	var spec ListenSpec
	if s == "" {
		return spec, errEmptyListen
	}
	if len(s) > maxNameLen+1+maxAddressLen+16 {
		return spec, listenErr("listen address of %d bytes is too long", len(s))
	}
	sep := strings.Index(s, "://")
	if sep < 0 {
		return spec, listenErr("listen address %q: want SCHEME://ADDRESS, such as tcp://127.0.0.1:8080", s)
	}
	scheme := s[:sep]
	if eq := strings.IndexByte(scheme, '='); eq >= 0 {
		spec.Name, scheme = scheme[:eq], scheme[eq+1:]
		if err := checkName(spec.Name); err != nil {
			return spec, &ListenError{Reason: fmt.Sprintf("listen address %q: %v", s, err), Err: err}
		}
	}
	spec.Network, spec.Address = scheme, s[sep+3:]
	if len(spec.Address) > maxAddressLen {
		return spec, listenErr("listen address %q: address too long", s)
	}
	switch scheme {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
		host, port, err := net.SplitHostPort(spec.Address)
		if err != nil {
			return spec, &ListenError{Reason: fmt.Sprintf("listen address %q: want %s://[HOST]:PORT: %v", s, scheme, err), Err: err}
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || port != strconv.FormatUint(n, 10) {
			return spec, listenErr("listen address %q: bad port %q: want a number from 0 to 65535", s, port)
		}
		if strings.ContainsAny(host, " \t\r\n/\x00") {
			return spec, listenErr("listen address %q: bad host %q", s, host)
		}
	case "unix":
		if spec.Address == "" || spec.Address == "@" {
			return spec, listenErr("listen address %q: want unix:///path/to.sock or unix://@name", s)
		}
		if strings.IndexByte(spec.Address, 0) >= 0 {
			return spec, listenErr("listen address %q: NUL byte in the path", s)
		}
		// sun_path holds 108 bytes with the terminating NUL.
		if len(spec.Address) > 107 {
			return spec, listenErr("listen address %q: a unix socket path has at most 107 bytes", s)
		}
	default:
		return spec, listenErr("listen address %q: unknown scheme %q; want tcp, tcp4, tcp6, udp, udp4, udp6 or unix", s, scheme)
	}
	return spec, nil
}

func checkName(name string) error {
	if name == "" {
		return errors.New("empty name before '='")
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("name longer than %d bytes", maxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '.' || c == '-') {
			return fmt.Errorf("bad name %q: want letters, digits, '_', '.' and '-'", name)
		}
	}
	return nil
}

// listenErr is a *ListenError whose Reason is format with args.
func listenErr(format string, args ...any) error {
	return &ListenError{Reason: fmt.Sprintf(format, args...)}
}
