package systemd

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ErrNotSupported is returned where the systemd protocols cannot work, on
// systems other than Linux: by NewNotifier when NOTIFY_SOCKET is set, by the
// methods of a Notifier from NewNotifierFrom, by Listeners when descriptors
// were passed to the process, and by Activated.Addr.
var ErrNotSupported = errors.New("systemd: not supported on this system")

// DefaultBarrierTimeout is how long Barrier waits when given no timeout.
// systemd answers within milliseconds unless it is very busy; a handover
// that waits longer than this is better abandoned.
const DefaultBarrierTimeout = 5 * time.Second

// Notifier sends notifications to the service manager over the socket
// named by NOTIFY_SOCKET (sd_notify(3)).
//
// A nil *Notifier is valid and means "not run by a service manager": every
// method does nothing and returns nil (WatchdogInterval returns 0, false).
// Code can therefore call n.Ready() whether or not it runs under systemd.
// The zero Notifier does nothing either.
//
// A Notifier holds no open descriptor (each notification goes out on a
// socket of its own) and never changes, so it is safe for concurrent use
// and needs no Close.
type Notifier struct {
	addr       string        // "/path" or "@abstract"
	watchdog   time.Duration // WATCHDOG_USEC, if meant for this process
	watchdogOK bool
}

// NewNotifier returns a Notifier for the socket in NOTIFY_SOCKET, or nil
// and no error when the variable is unset or empty: the process was not
// started by a service manager that listens. It returns an error when the
// address is malformed or of a kind this package does not speak (systemd's
// "vsock:" addresses), and ErrNotSupported on systems other than Linux.
//
// It also reads WATCHDOG_USEC and WATCHDOG_PID, see WatchdogInterval.
//
// NewNotifier leaves the environment alone: a successor this process starts
// must inherit NOTIFY_SOCKET to send MAINPID= and READY=1. To keep an
// unrelated child from speaking for the service, take NOTIFY_SOCKET out of
// that child's environment (or call os.Unsetenv("NOTIFY_SOCKET") once the
// Notifier exists, if no successor will need it).
func NewNotifier() (*Notifier, error) {
	addr := os.Getenv("NOTIFY_SOCKET")
	if addr == "" {
		return nil, nil
	}
	if !supported {
		return nil, ErrNotSupported
	}
	if err := checkNotifySocket(addr); err != nil {
		return nil, err
	}
	n := &Notifier{addr: addr}
	n.watchdog, n.watchdogOK = parseWatchdog(os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID"), os.Getpid())
	return n, nil
}

// NewNotifierFrom returns a Notifier for the given socket address, an
// absolute path or "@" and the name of an abstract socket, whatever the
// environment says. It returns nil, the no-op Notifier, for "". A malformed
// address is reported by the first notification. The Notifier has no
// watchdog.
//
// It is for tests and for a process that runs a notification socket of its
// own for programs it starts.
func NewNotifierFrom(socket string) *Notifier {
	if socket == "" {
		return nil
	}
	return &Notifier{addr: socket}
}

// checkNotifySocket reports whether addr is a Unix socket address this
// package can send to.
func checkNotifySocket(addr string) error {
	switch {
	case addr == "":
		return errors.New("systemd: no notification socket")
	case strings.HasPrefix(addr, "vsock:"), strings.HasPrefix(addr, "vsock-"):
		return fmt.Errorf("systemd: NOTIFY_SOCKET %q: AF_VSOCK is not supported", addr)
	case addr[0] != '/' && addr[0] != '@', addr == "@":
		return fmt.Errorf("systemd: NOTIFY_SOCKET %q: want an absolute path or @ and an abstract name", addr)
	case strings.IndexByte(addr, 0) >= 0:
		return fmt.Errorf("systemd: NOTIFY_SOCKET %q: contains a NUL byte", addr)
	case len(addr) > maxSocketPath:
		return fmt.Errorf("systemd: NOTIFY_SOCKET %q: longer than %d bytes", addr, maxSocketPath)
	}
	return nil
}

// maxSocketPath is the longest Unix socket name: sun_path holds 108 bytes,
// one of them the terminating NUL.
const maxSocketPath = 107

// Send sends fields, each "KEY=VALUE", as one notification. The
// well-known fields have methods of their own; Send is for the rest, such
// as "EXTEND_TIMEOUT_USEC=", "ERRNO=" or "NOTIFYACCESS=", and for fields
// that must arrive together.
//
// Nothing is sent, and the error says why, for what systemd would drop or
// misread: no field, a field that is not KEY=VALUE with a key shaped like
// an environment variable name, a value with a newline, a NUL byte or
// invalid UTF-8, an FDNAME= that is not a valid descriptor name (see
// FDStore), BARRIER=1 next to other fields, or a message longer than
// MaxMessageSize.
func (n *Notifier) Send(fields ...string) error {
	return n.SendFDs(nil, fields...)
}

// SendFDs is Send with descriptors attached (SCM_RIGHTS), at most MaxFDs.
// The descriptors are the caller's: they are duplicated into the receiver
// and stay open here. Pass raw descriptors obtained through SyscallConn,
// never (*os.File).Fd on a shared socket: Fd puts the socket in blocking
// mode for every process that holds it.
func (n *Notifier) SendFDs(fds []int, fields ...string) error {
	if n.off() {
		return nil
	}
	msg, err := buildMessage(fields)
	if err != nil {
		return err
	}
	if !supported {
		return ErrNotSupported
	}
	if len(fds) > MaxFDs {
		return fmt.Errorf("systemd: %d descriptors in one notification, more than %d", len(fds), MaxFDs)
	}
	for _, fd := range fds {
		if fd < 0 {
			return fmt.Errorf("systemd: bad descriptor %d", fd)
		}
	}
	if err := send(n.addr, msg, fds); err != nil {
		return fmt.Errorf("systemd: notify %s: %w", n.addr, err)
	}
	return nil
}

// Ready tells the service manager that start-up, or a reload, is complete
// (READY=1). With Type=notify the unit becomes active only then.
func (n *Notifier) Ready() error { return n.Send("READY=1") }

// Reloading tells the service manager that the service is reloading
// (RELOADING=1), with the current CLOCK_MONOTONIC time in MONOTONIC_USEC=,
// which Type=notify-reload requires to tell this reload from an older one.
// Send Ready when the reload is complete.
func (n *Notifier) Reloading() error {
	if n.off() {
		return nil
	}
	usec, err := monotonicUsec()
	if err != nil {
		return err
	}
	return n.Send("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatUint(usec, 10))
}

// Stopping tells the service manager that the service is shutting down
// (STOPPING=1). Never send it from a generation that hands over to a
// successor: to systemd it means the whole service is going away.
func (n *Notifier) Stopping() error { return n.Send("STOPPING=1") }

// Status sets the one-line status shown by systemctl status (STATUS=).
// It must not contain a newline.
func (n *Notifier) Status(status string) error { return n.Send("STATUS=" + status) }

// MainPID tells the service manager that pid is now the service's main
// process (MAINPID=), the one whose exit ends the service.
//
// systemd accepts it from the current main process with the default
// NotifyAccess=main. From any other process, such as a successor that
// announces itself, it needs NotifyAccess=all in the unit (or a
// "NOTIFYACCESS=all" notification from the main process first, systemd 254
// and later). An unprivileged sender can only name a process in the
// service's own cgroup. Follow it with Barrier before the old main process
// exits, or systemd may see the old one die first and stop the service.
func (n *Notifier) MainPID(pid int) error {
	if n.off() {
		return nil
	}
	if pid <= 0 {
		return fmt.Errorf("systemd: bad main pid %d", pid)
	}
	return n.Send("MAINPID=" + strconv.Itoa(pid))
}

// Barrier waits until the service manager has processed every notification
// sent before it, by this process or any other, or until timeout passes
// (DefaultBarrierTimeout if timeout <= 0).
//
// It sends BARRIER=1 with the write end of a new pipe attached, closes its
// own copy, and waits for end-of-file on the read end: systemd closes the
// copy it received once it has dealt with everything queued before it. On
// timeout the error wraps os.ErrDeadlineExceeded. A receiver that is not
// systemd may never close the descriptor; Barrier then times out.
//
// systemd answers a barrier before it looks at the sender, so Barrier
// works from any process, whatever NotifyAccess= says.
func (n *Notifier) Barrier(timeout time.Duration) error {
	if n.off() {
		return nil
	}
	if !supported {
		return ErrNotSupported
	}
	if timeout <= 0 {
		timeout = DefaultBarrierTimeout
	}
	if err := barrier(n.addr, timeout); err != nil {
		return fmt.Errorf("systemd: barrier on %s: %w", n.addr, err)
	}
	return nil
}

// FDStore hands descriptors to the service manager's file descriptor store
// under name (FDSTORE=1, FDNAME=name). A name is 1 to MaxFDNameLen
// printable ASCII characters other than ':'. The unit needs
// FileDescriptorStoreMax= above zero. systemd passes stored descriptors
// back, with their names, in LISTEN_FDS and LISTEN_FDNAMES to the next
// process it starts for the service (see Listeners). It keeps a descriptor
// it already holds only once, and drops a stored descriptor that reports
// POLLHUP or POLLERR unless told otherwise with "FDPOLL=0" (use SendFDs).
//
// The descriptors stay open here; pass raw descriptors, as for SendFDs.
func (n *Notifier) FDStore(name string, fds ...int) error {
	if n.off() {
		return nil
	}
	if err := checkFDName(name); err != nil {
		return err
	}
	if len(fds) == 0 {
		return errors.New("systemd: FDStore without descriptors")
	}
	return n.SendFDs(fds, "FDSTORE=1", "FDNAME="+name)
}

// FDStoreRemove asks the service manager to close and forget every stored
// descriptor named name (FDSTOREREMOVE=1, FDNAME=name).
func (n *Notifier) FDStoreRemove(name string) error {
	if n.off() {
		return nil
	}
	if err := checkFDName(name); err != nil {
		return err
	}
	return n.Send("FDSTOREREMOVE=1", "FDNAME="+name)
}

// Watchdog tells the service manager that the service is alive
// (WATCHDOG=1). With WatchdogSec= set, send it at least every
// WatchdogInterval, commonly every half of it.
func (n *Notifier) Watchdog() error { return n.Send("WATCHDOG=1") }

// WatchdogInterval returns the watchdog interval the service manager
// expects (WATCHDOG_USEC) and true, or false when there is none for this
// process: the variables were unset or malformed when NewNotifier ran, or
// WATCHDOG_PID named another process (sd_watchdog_enabled(3)).
func (n *Notifier) WatchdogInterval() (time.Duration, bool) {
	if n.off() {
		return 0, false
	}
	return n.watchdog, n.watchdogOK
}

// off reports whether n is the no-op Notifier: nil, or the zero value.
func (n *Notifier) off() bool { return n == nil || n.addr == "" }

// parseWatchdog interprets WATCHDOG_USEC and WATCHDOG_PID for the process
// pid, as sd_watchdog_enabled does; anything malformed means no watchdog.
func parseWatchdog(usec, watchdogPID string, pid int) (time.Duration, bool) {
	u, ok := parseDecimal(usec, maxWatchdogUsec)
	if !ok || u == 0 {
		return 0, false
	}
	if watchdogPID != "" {
		p, ok := parseDecimal(watchdogPID, maxPID)
		if !ok || p == 0 || int(p) != pid {
			return 0, false
		}
	}
	return time.Duration(u) * time.Microsecond, true
}

const (
	maxWatchdogUsec = uint64(1<<63-1) / uint64(time.Microsecond)
	maxPID          = 1<<31 - 1 // pid_t
)

// parseDecimal parses s, ASCII digits only (no sign, no space), as a number
// no greater than max.
func parseDecimal(s string, max uint64) (uint64, bool) {
	if s == "" || len(s) > 20 {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := uint64(c - '0')
		if v > (max-d)/10 {
			return 0, false
		}
		v = v*10 + d
	}
	return v, true
}
