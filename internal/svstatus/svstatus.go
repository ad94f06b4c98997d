package svstatus

import (
	"encoding/binary"
	"fmt"
)

// A Kind is a supervisor of the daemontools family.
type Kind string

const (
	Daemontools Kind = "daemontools" // supervise, svc
	Runit       Kind = "runit"       // runsv, sv
	S6          Kind = "s6"          // s6-supervise, s6-svc
)

// Stamp is the TAI64N time at the start of every layout.
type Stamp [12]byte

// Status is what a status file says.
type Status struct {
	Kind  Kind
	Stamp Stamp
	// PID is the process the supervisor tracks: the service's (./run),
	// or ./finish's while Finishing; 0 if none.
	PID int
	// Up: the service process (./run) runs: a pid, and not finishing.
	Up bool
	// WantUp: the supervisor starts the service again when it exits.
	WantUp bool
	// Paused: stopped with SIGSTOP by "svc -p" and the like.
	Paused bool
	// Finishing: ./finish runs (runit state 2, s6 flag 0x02).
	Finishing bool
	// Ready is s6's readiness: the process wrote a newline to the
	// descriptor named by the service directory's notification-fd file.
	// Always false for daemontools and runit, for s6 without a
	// notification-fd, and when not Up (s6 keeps the flag while down).
	Ready bool
}

// Layout sizes and fields, as described in the package documentation.
const (
	daemontoolsLen = 18
	runitLen       = 20
	s6Len          = 35
	s6PgidLen      = 43

	runitStateDown   = 0
	runitStateRun    = 1
	runitStateFinish = 2

	s6Paused    = 0x01
	s6Finishing = 0x02
	s6WantUp    = 0x04
	s6Ready     = 0x08

	// pidMax is PID_MAX_LIMIT on 64-bit Linux: no pid is above it.
	pidMax = 1 << 22
)

// KindOf returns the supervisor whose layout has n bytes, or "".
func KindOf(n int) Kind {
	switch n {
	case daemontoolsLen:
		return Daemontools
	case runitLen:
		return Runit
	case s6Len, s6PgidLen:
		return S6
	}
	return ""
}

// Parse decodes a status file; its length tells the supervisor.
func Parse(b []byte) (Status, error) {
	k := KindOf(len(b))
	if k == "" {
		return Status{}, fmt.Errorf("svstatus: a status file of %d bytes is not daemontools' (%d), runit's (%d) or s6's (%d or %d)",
			len(b), daemontoolsLen, runitLen, s6Len, s6PgidLen)
	}
	return ParseKind(k, b)
}

// ParseKind decodes the status file of a supervisor of kind k: one of
// another layout is an error.
func ParseKind(k Kind, b []byte) (Status, error) {
	s := Status{Kind: k}
	switch k {
	case Daemontools, Runit:
		want := daemontoolsLen
		if k == Runit {
			want = runitLen
		}
		if len(b) != want {
			return Status{}, fmt.Errorf("svstatus: %s status is %d bytes; want %d", k, len(b), want)
		}
		if b[17] != 'u' && b[17] != 'd' {
			return Status{}, fmt.Errorf("svstatus: %s status: want byte %#02x is neither 'u' nor 'd'", k, b[17])
		}
		pid := binary.LittleEndian.Uint32(b[12:16])
		if pid > pidMax {
			return Status{}, fmt.Errorf("svstatus: %s status: pid %d is out of range", k, pid)
		}
		s.PID = int(pid)
		s.WantUp = b[17] == 'u'
		s.Paused = b[16] != 0
		s.Up = s.PID != 0
		if k == Runit {
			switch b[19] {
			case runitStateDown:
				s.Up = false
			case runitStateRun:
				if s.PID == 0 {
					return Status{}, fmt.Errorf("svstatus: runit status: state run without a pid")
				}
			case runitStateFinish:
				// runsv keeps the finish script's pid.
				s.Up, s.Finishing = false, true
			default:
				return Status{}, fmt.Errorf("svstatus: runit status: state byte %d is not 0 (down), 1 (run) or 2 (finish)", b[19])
			}
		}
	case S6:
		if len(b) != s6Len && len(b) != s6PgidLen {
			return Status{}, fmt.Errorf("svstatus: s6 status is %d bytes; want %d (s6 2.11 and older) or %d (s6 2.12 and newer)", len(b), s6Len, s6PgidLen)
		}
		flags := b[len(b)-1]
		pid := binary.BigEndian.Uint64(b[24:32])
		if pid > pidMax {
			return Status{}, fmt.Errorf("svstatus: s6 status: pid %d is out of range", pid)
		}
		s.PID = int(pid)
		s.WantUp = flags&s6WantUp != 0
		s.Paused = flags&s6Paused != 0
		s.Finishing = flags&s6Finishing != 0
		// While ./finish runs s6 keeps its pid; s6-svstat says down.
		s.Up = s.PID != 0 && !s.Finishing
		s.Ready = s.Up && flags&s6Ready != 0
	default:
		return Status{}, fmt.Errorf("svstatus: unknown supervisor kind %q; want %q, %q or %q", k, Daemontools, Runit, S6)
	}
	copy(s.Stamp[:], b)
	return s, nil
}
