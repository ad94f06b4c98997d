package svtest

import (
	"fmt"

	"github.com/batonhq/baton/internal/svstatus"
)

// A Kind is a supervisor of the daemontools family: the names are
// svstatus.Kind's.
type Kind string

const (
	Daemontools Kind = Kind(svstatus.Daemontools) // supervise, svc
	Runit       Kind = Kind(svstatus.Runit)       // runsv, sv
	S6          Kind = Kind(svstatus.S6)          // s6-supervise, s6-svc
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

// ParseStatus decodes the supervise/status file of a Kind (the layouts
// are in package svstatus, which the library reads them with too).
func ParseStatus(k Kind, b []byte) (Status, error) {
	st, err := svstatus.ParseKind(svstatus.Kind(k), b)
	if err != nil {
		return Status{}, err
	}
	s := Status{PID: st.PID, Up: st.Up, WantUp: st.WantUp, Paused: st.Paused, Ready: st.Ready}
	if !s.Up {
		// The pid of ./finish, while it runs, is not the service's.
		s.PID = 0
	}
	return s, nil
}
