//go:build linux || darwin

package baton

import (
	"fmt"
	"os"
	"strconv"

	"github.com/batonhq/baton/systemd"
)

// What the Upgrader tells systemd and s6, and takes from systemd. None of
// it needs a line of the application's code: it happens when
// NOTIFY_SOCKET, LISTEN_FDS or s6's notification-fd say a service manager
// is there, and not otherwise.

// managers are the service managers that hear of this generation.
type managers struct {
	notify *systemd.Notifier // nil unless systemd listens (NOTIFY_SOCKET)
	// byUpgrade is true when our predecessor started us with Upgrade; it
	// then speaks for us to systemd. It is false for a first start and for
	// a takeover through the control socket.
	byUpgrade bool
	s6ready   *os.File // s6-supervise's notification-fd, until Ready; guarded by Upgrader.mu
}

// adoptActivated registers the descriptors systemd passed to a first
// generation — socket activation, or the file descriptor store — so that
// Listen finds them by address (and Listener, File... by their name).
func (u *Upgrader) adoptActivated() error {
	acts, err := systemd.Listeners()
	if err != nil {
		return fmt.Errorf("baton: descriptors from systemd: %w", err)
	}
	if len(acts) == 0 {
		return nil
	}
	names := make(map[string]int, len(acts))
	for _, a := range acts {
		names[a.Name]++
	}
	entries := make([]*entry, 0, len(acts))
	for _, a := range acts {
		m := fdMeta{Kind: kindFile}
		if network, addr, listening, err := a.Addr(); err == nil {
			m.Network, m.Actual = network, addr
			switch {
			case listening:
				m.Kind = kindListener
			case validNetwork(kindPacket, network):
				m.Kind = kindPacket
			default:
				m.Kind = kindConn
			}
		}
		// A name tells descriptors apart only if it is theirs alone:
		// systemd gives every socket of a unit the unit's name.
		if names[a.Name] == 1 && a.Name != "unknown" && validName(a.Name) {
			m.Name = a.Name
		}
		if m.Kind == kindFile && m.Name == "" {
			u.log.Warn("closing a descriptor from systemd that is neither a socket nor uniquely named", "fd", a.Fd, "name", a.Name)
			closeFds([]int{a.Fd})
			continue
		}
		entries = append(entries, &entry{meta: m, fd: a.Fd, activated: true})
		u.log.Info("descriptor from systemd", "name", a.Name, "network", m.Network, "address", m.Actual)
	}
	u.reg.inherit(entries)
	return nil
}

// announceReady tells systemd and s6 that a generation they started
// serves. A successor started by Upgrade is announced by its predecessor
// instead (handOverMainPID), which systemd still hears from.
func (u *Upgrader) announceReady() {
	if !u.mgr.byUpgrade {
		if err := u.mgr.notify.Send("READY=1", "STATUS="+u.statusLine()); err != nil {
			u.log.Warn("telling systemd we are ready", "err", err)
		}
	}
	if f := u.takeS6Ready(); f != nil {
		if _, err := f.WriteString("\n"); err != nil {
			u.log.Warn("telling s6-supervise we are ready", "err", err)
		}
		f.Close()
	}
	if u.opts.FDStore {
		u.storeFDs()
	}
}

// takeS6Ready returns s6's notification descriptor to the one caller that
// uses it — Ready, or a Stop before ready — and nil to any other.
func (u *Upgrader) takeS6Ready() *os.File {
	u.mu.Lock()
	defer u.mu.Unlock()
	f := u.mgr.s6ready
	u.mgr.s6ready = nil
	return f
}

func (u *Upgrader) statusLine() string {
	return fmt.Sprintf("serving, generation %d, pid %d", u.gen, os.Getpid())
}

// handOverMainPID makes the ready successor systemd's main process before
// this generation is told to go: MAINPID, READY=1 and the successor's
// status in one message, then a barrier, so that systemd has switched
// before our exit can reach it.
func (u *Upgrader) handOverMainPID(pid int) {
	if u.mgr.notify == nil {
		return
	}
	status := fmt.Sprintf("serving, generation %d, pid %d", u.gen+1, pid)
	err := u.mgr.notify.Send("MAINPID="+strconv.Itoa(pid), "READY=1", "STATUS="+status)
	if err == nil {
		err = u.mgr.notify.Barrier(0)
	}
	if err != nil {
		// Going on is the lesser risk: the successor serves, and without
		// it the service would stay on a generation that drains anyway.
		u.log.Warn("systemd may not have switched to the successor yet", "successor", pid, "err", err)
	}
}

// takeBackMainPID undoes handOverMainPID when the handover failed after it.
func (u *Upgrader) takeBackMainPID() {
	if err := u.mgr.notify.Send("MAINPID="+strconv.Itoa(os.Getpid()), "READY=1"); err != nil {
		u.log.Warn("telling systemd we are still the main process", "err", err)
	}
}

// fdStoreName is the FDNAME of listeners that have no name of their own.
const fdStoreName = "baton"

// storeFDs pushes every listening socket into systemd's file descriptor
// store (Options.FDStore). systemd keeps one copy of each socket however
// often it is pushed, so every generation pushes all of them, including
// any it created itself.
func (u *Upgrader) storeFDs() {
	if u.mgr.notify == nil {
		u.log.Warn("Options.FDStore is set, but systemd is not listening (no NOTIFY_SOCKET)")
		return
	}
	// The registry keeps no copy of the application's sockets: each
	// push sends their own descriptors, held open for its length (see
	// registry.withFds).
	s := u.reg.snapshot()
	byName := map[string][]*entry{}
	for i, m := range s.metas {
		if m.Kind != kindListener && m.Kind != kindPacket {
			continue
		}
		name := m.Name
		if name == "" {
			name = fdStoreName
		}
		byName[name] = append(byName[name], s.entries[i])
	}
	for name, es := range byName {
		for len(es) > 0 {
			n := min(len(es), systemd.MaxFDs)
			if err := u.reg.withFds(es[:n], func(fds []int) error { return u.mgr.notify.FDStore(name, fds...) }); err != nil {
				u.log.Warn("pushing sockets into systemd's descriptor store", "name", name, "err", err)
				break
			}
			es = es[n:]
		}
	}
}

// statusText makes s fit for STATUS=: one line.
func statusText(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c == '\n' || c == 0 {
			b[i] = ' '
		}
	}
	return truncate(string(b), 1024)
}
