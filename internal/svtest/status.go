package svtest

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

// Kinds returns every supported Kind, in the order tests run them.
func Kinds() []Kind { return []Kind{Daemontools, Runit, S6} }

// Programs returns the binaries a Kind needs on PATH: the supervisor first,
// then its control tools.
func (k Kind) Programs() []string {
	switch k {
	case Daemontools:
		return []string{"supervise", "svc", "svstat"}
	case Runit:
		return []string{"runsv", "sv"}
	case S6:
		return []string{"s6-supervise", "s6-svc", "s6-svstat"}
	}
	return nil
}

// Status is a supervisor's view of its service, from supervise/status.
type Status struct {
	// PID is the service process the supervisor tracks, 0 when the
	// service is not up (down, or between a death and the next start).
	PID    int
	Up     bool // the service process runs
	WantUp bool // the supervisor starts it again when it exits
	Paused bool // stopped with SIGSTOP by "svc -p" and the like

	// Ready is s6's readiness: the process wrote a newline to the
	// descriptor named by the service directory's notification-fd file.
	// Always false for daemontools and runit, and for s6 without a
	// notification-fd.
	Ready bool
}

func (s Status) String() string {
	state, want := "down", "want down"
	if s.Up {
		state = fmt.Sprintf("up (pid %d)", s.PID)
	}
	if s.WantUp {
		want = "want up"
	}
	if s.Paused {
		want += ", paused"
	}
	if s.Ready {
		want += ", ready"
	}
	return state + ", " + want
}

// Status file layouts, as the tools write them. The first two were checked
// byte by byte against svstat, "sv status" and s6-svstat on Debian bookworm
// (daemontools 0.76, runit 2.1.2, s6 2.11.3); status_test.go holds the
// captures.
//
//	daemontools  18 bytes: TAI64N stamp [0:12], pid uint32 little-endian
//	             [12:16] (0 when down), paused [16], want 'u' or 'd' [17]
//	runit        20 bytes: the same, then got-TERM [18] and state [19]:
//	             0 down, 1 run, 2 finish (the pid is then ./finish's)
//	s6 ≤ 2.11    35 bytes: stamp [0:12], ready stamp [12:24], pid uint64
//	             big-endian [24:32] (./finish's while finishing), wait
//	             status [32:34], flags [34]: 0x01 paused, 0x02 finishing,
//	             0x04 want up, 0x08 ready
//	s6 ≥ 2.12    43 bytes: a pgid uint64 is inserted at [32:40], the rest
//	             moves 8 bytes on. Taken from s6's s6_svstatus_pack.c, not
//	             checked against a running s6 2.12.
const (
	daemontoolsStatusLen = 18
	runitStatusLen       = 20
	s6StatusLen          = 35
	s6PgidStatusLen      = 43

	runitStateRun    = 1
	runitStateFinish = 2

	s6Paused    = 0x01
	s6Finishing = 0x02
	s6WantUp    = 0x04
	s6Ready     = 0x08 // also set while down ("down and ready")
)

// ParseStatus decodes the supervise/status file of a Kind.
func ParseStatus(k Kind, b []byte) (Status, error) {
	switch k {
	case Daemontools, Runit:
		want := daemontoolsStatusLen
		if k == Runit {
			want = runitStatusLen
		}
		if len(b) != want {
			return Status{}, fmt.Errorf("svtest: %s status is %d bytes; want %d", k, len(b), want)
		}
		if b[17] != 'u' && b[17] != 'd' {
			return Status{}, fmt.Errorf("svtest: %s status: want byte %#02x is neither 'u' nor 'd'", k, b[17])
		}
		s := Status{
			PID:    int(binary.LittleEndian.Uint32(b[12:16])),
			WantUp: b[17] == 'u',
			Paused: b[16] != 0,
		}
		s.Up = s.PID != 0
		if k == Runit {
			// During ./finish runsv keeps the finish script's pid.
			if b[19] > runitStateFinish {
				return Status{}, fmt.Errorf("svtest: runit status: state byte %d is not 0 (down), 1 (run) or 2 (finish)", b[19])
			}
			if b[19] == runitStateRun && s.PID == 0 {
				return Status{}, fmt.Errorf("svtest: runit status: state run without a pid")
			}
			s.Up = b[19] == runitStateRun
		}
		if !s.Up {
			s.PID = 0
		}
		return s, nil
	case S6:
		var flags byte
		switch len(b) {
		case s6StatusLen:
			flags = b[34]
		case s6PgidStatusLen:
			flags = b[42]
		default:
			return Status{}, fmt.Errorf("svtest: s6 status is %d bytes; want %d (s6 2.11 and older) or %d (s6 2.12 and newer)", len(b), s6StatusLen, s6PgidStatusLen)
		}
		pid := binary.BigEndian.Uint64(b[24:32])
		if pid > 1<<22 { // PID_MAX_LIMIT on 64-bit Linux
			return Status{}, fmt.Errorf("svtest: s6 status: pid %d is out of range", pid)
		}
		s := Status{
			PID:    int(pid),
			WantUp: flags&s6WantUp != 0,
			Paused: flags&s6Paused != 0,
		}
		// While ./finish runs s6 keeps its pid; s6-svstat says down.
		s.Up = s.PID != 0 && flags&s6Finishing == 0
		s.Ready = s.Up && flags&s6Ready != 0
		if !s.Up {
			s.PID = 0
		}
		return s, nil
	}
	return Status{}, fmt.Errorf("svtest: unknown supervisor kind %q; want %q, %q or %q", k, Daemontools, Runit, S6)
}
