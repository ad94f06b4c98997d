//go:build linux || darwin

package baton

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// entry is one descriptor the registry will pass on.
//
// A listening or packet socket costs one descriptor per process, not two:
// the registry passes on the descriptor of the application's own value and
// keeps no copy of it (with a copy, 10,000 sockets need 20,000 descriptors
// in every generation). Everything else, and an inherited socket until
// this generation makes a value of it, the registry holds itself.
type entry struct {
	meta fdMeta
	// fd is the registry's own close-on-exec descriptor, or -1. It is an
	// inherited descriptor nobody made a listener or packet socket of (yet:
	// unclaimed, or claimed as a file or a connection), or a copy of a
	// file or connection given to Add: those stay the caller's to close.
	fd int
	// conns reach the application's own listeners or packet sockets for
	// this entry: the one given to Add or made by Listen, or those that
	// Listen, Listener or PacketConn made of an inherited descriptor. The
	// descriptor passed on is that of the first one still open, found
	// through SyscallConn, never through File or Fd: those may switch the
	// shared open file description to blocking mode for every holder.
	// Kept as RawConn, not as a descriptor number: a number outlives the
	// value's Close and may name another file by the time it is sent, but
	// Control on a closed value fails. Once the application has closed
	// every one, the socket itself is gone (nobody else held it), and it is
	// not passed on.
	conns []syscall.RawConn
	// inherited is true for descriptors received from the predecessor;
	// claimed is true once this generation asked for them. Inherited
	// descriptors nobody claimed are closed by Ready.
	inherited, claimed bool
	// activated is true for descriptors systemd passed (socket activation
	// or the descriptor store). Nobody asked for them by address yet, so
	// they are found by what they are bound to, in the forms a program
	// may ask for them (see addrKeys).
	activated bool
}

// unixPath returns the file system path of a unix socket entry, or "" for
// anything else (including abstract sockets, which have no file).
func (e *entry) unixPath() string {
	if e.meta.Kind != kindListener && e.meta.Kind != kindPacket {
		return ""
	}
	switch e.meta.Network {
	case "unix", "unixpacket", "unixgram":
	default:
		return ""
	}
	p := e.meta.Actual
	if p == "" {
		p = e.meta.Address
	}
	if p == "" || p[0] == '@' {
		return ""
	}
	return p
}

// control calls f with a descriptor of e that stays open until f returns,
// and reports whether e had one: the registry's own, or that of the first
// of the application's values still open. That one is used inside its
// RawConn.Control, where the poller holds a reference that makes a
// concurrent Close wait until f returns (the descriptor is closed only
// when its last reference goes), so it can neither be closed nor reused
// for another file while f uses it. f must not block for long, then: an
// application closing the listener waits. The caller holds the registry's
// lock (e.fd and e.conns change under it).
func (e *entry) control(f func(fd int)) bool {
	if e.fd >= 0 {
		f(e.fd)
		return true
	}
	for _, rc := range e.conns {
		if rc.Control(func(fd uintptr) { f(int(fd)) }) == nil {
			return true
		}
	}
	return false
}

// open reports whether e still has a descriptor to pass on.
func (e *entry) open() bool { return e.control(func(int) {}) }

// adopt makes v, a listener or packet socket built from a copy of e's
// descriptor, the holder of e's socket, and closes the registry's own
// descriptor if it had one: from now on the socket costs this process one
// descriptor, v's. Values built from e later are added too, so that e is
// passed on as long as any of them is open. The caller holds the
// registry's lock.
func (e *entry) adopt(v syscall.Conn) {
	rc, err := v.SyscallConn()
	if err != nil {
		return // keep the registry's descriptor, as for a file
	}
	e.conns = append(e.conns, rc)
	if e.fd >= 0 {
		unix.Close(e.fd)
		e.fd = -1
	}
}

// describe names e in errors.
func (e *entry) describe() string {
	if e.meta.Name != "" {
		return fmt.Sprintf("%s %q", e.meta.Kind, e.meta.Name)
	}
	return fmt.Sprintf("%s %s %s", e.meta.Network, e.meta.Kind, e.meta.Actual)
}

// errClosedByApp is why a registered socket cannot be used or passed on:
// the application closed every value it had of it, and with them the
// socket.
var errClosedByApp = errors.New("closed by the application")

// registry holds every descriptor this generation will hand over.
type registry struct {
	mu      sync.Mutex
	entries []*entry
	// The indexes keep a generation's lookups linear in the number of
	// descriptors, not quadratic: a successor may claim thousands.
	byName map[string]*entry
	byAddr map[addrKey][]*entry // inherited, unnamed: by asked-for and actual address
	closed bool
}

type addrKey struct {
	kind             fdKind
	network, address string
}

// index adds e to the lookup indexes; the caller holds r.mu.
func (r *registry) index(e *entry) {
	if e.meta.Name != "" {
		if r.byName == nil {
			r.byName = map[string]*entry{}
		}
		r.byName[e.meta.Name] = e
		if !e.activated {
			return
		}
	}
	if !e.inherited {
		return
	}
	if r.byAddr == nil {
		r.byAddr = map[addrKey][]*entry{}
	}
	for _, k := range addrKeys(e) {
		r.byAddr[k] = append(r.byAddr[k], e)
	}
}

// addrKeys returns the keys e is found by. A descriptor passed on by a
// predecessor is found by the network and address it was asked for, and by
// its actual address. One from systemd was never asked for: it is found by
// its actual address on its network ("tcp") and on the family's
// ("tcp4", "tcp6"), and, bound to a wildcard address, also by ":port".
func addrKeys(e *entry) []addrKey {
	m := e.meta
	if !e.activated {
		keys := make([]addrKey, 0, 2)
		for i, a := range []string{m.Address, m.Actual} {
			if a == "" || i == 1 && a == m.Address {
				continue
			}
			keys = append(keys, addrKey{m.Kind, m.Network, a})
		}
		return keys
	}
	if m.Actual == "" {
		return nil
	}
	nets := []string{m.Network}
	addrs := []string{m.Actual}
	if m.Network == "tcp" || m.Network == "udp" {
		if ap, err := netip.ParseAddrPort(m.Actual); err == nil {
			if ap.Addr().Is4() {
				nets = append(nets, m.Network+"4")
			} else {
				nets = append(nets, m.Network+"6")
			}
			if ap.Addr().IsUnspecified() {
				addrs = append(addrs, ":"+strconv.Itoa(int(ap.Port())))
			}
		}
	}
	var keys []addrKey
	for _, n := range nets {
		for _, a := range addrs {
			keys = append(keys, addrKey{m.Kind, n, a})
		}
	}
	return keys
}

// inherit registers the descriptors received from the predecessor.
func (r *registry) inherit(es []*entry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range es {
		e.inherited = true
		r.entries = append(r.entries, e)
		r.index(e)
	}
}

func (r *registry) add(e *entry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		closeOwn(e)
		return ErrStopped
	}
	if old, dup := r.byName[e.meta.Name]; dup && e.meta.Name != "" {
		if old.inherited || old.open() {
			closeOwn(e)
			return fmt.Errorf("baton: a descriptor named %q is already registered", e.meta.Name)
		}
		// The application closed the socket registered under this name
		// (and with it the socket): the name is free for a new one. The
		// old entry stays, so that a final Stop still removes its file.
		old.meta.Name = ""
	}
	r.entries = append(r.entries, e)
	r.index(e)
	return nil
}

// closeOwn closes the registry's own descriptor of e, if it has one.
func closeOwn(e *entry) {
	if e.fd >= 0 {
		unix.Close(e.fd)
		e.fd = -1
	}
}

// claimAddr finds an inherited, unclaimed socket of kind k on network that
// was asked for as addr or is bound to addr, so that a listener asked for on
// port 0 is found again by the same request or by its real port. Several
// asked for the same way are claimed in the order they were passed on.
func (r *registry) claimAddr(k fdKind, network, addr string) *entry {
	key := addrKey{k, network, addr}
	list := r.byAddr[key]
	for len(list) > 0 {
		e := list[0]
		list = list[1:]
		if !e.claimed {
			e.claimed = true
			r.byAddr[key] = list
			return e
		}
	}
	delete(r.byAddr, key)
	return nil
}

// closeUnclaimed closes inherited descriptors this generation never asked
// for: whoever used them is gone, and they must not reach the next one.
func (r *registry) closeUnclaimed() []fdMeta {
	r.mu.Lock()
	defer r.mu.Unlock()
	var dropped []fdMeta
	kept := r.entries[:0]
	for _, e := range r.entries {
		if e.inherited && !e.claimed {
			closeOwn(e)
			dropped = append(dropped, e.meta)
			if e.meta.Name != "" {
				delete(r.byName, e.meta.Name)
			}
			continue
		}
		kept = append(kept, e)
	}
	clear(r.entries[len(kept):])
	r.entries = kept
	// Every inherited socket is claimed or closed: nothing to find by
	// address any more.
	r.byAddr = nil
	return dropped
}

// fdSnapshot is what one upgrade passes on: the registry's entries, and
// their descriptions as they were when it began. It holds no descriptor:
// see withFds.
type fdSnapshot struct {
	reg     *registry
	metas   []fdMeta
	entries []*entry
	// state is what SetState set when the upgrade began: it travels in
	// the same handoff, after the descriptors (a state frame).
	state map[string][]byte
}

// snapshot returns what to pass on: every entry that still has a
// descriptor. An entry whose sockets the application has closed is left
// out; it stays in the registry all the same, so that a final Stop still
// removes its socket file, if it has one.
func (r *registry) snapshot() *fdSnapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := &fdSnapshot{reg: r}
	if r.closed {
		return s
	}
	for _, e := range r.entries {
		if !e.open() {
			continue
		}
		s.metas = append(s.metas, e.meta)
		s.entries = append(s.entries, e)
	}
	return s
}

// len is the number of descriptors s passes on.
func (s *fdSnapshot) len() int { return len(s.entries) }

// send calls f with the descriptions and descriptors of entries [i, j);
// the descriptors are valid until f returns (see withFds).
func (s *fdSnapshot) send(i, j int, f func(metas []fdMeta, fds []int) error) error {
	return s.reg.withFds(s.entries[i:j], func(fds []int) error { return f(s.metas[i:j], fds) })
}

// withFds calls f with a descriptor of each of es, in order, each valid
// until f returns, and without a copy of the application's sockets: f runs
// inside the RawConn.Control of every one of them (nested, see hold), so
// that none can be closed, nor its number reused, while f uses it. A copy
// per socket would cost what the registry no longer keeps, and even a
// batch of copies made just for the send would grow, at every upgrade, the
// descriptor table of a process that holds thousands of sockets (the
// kernel doubles it, and a multi-threaded process may wait for an RCU
// grace period when it does). The price: an application closing one of
// these sockets meanwhile waits until f returns — one sendmsg of at most
// 128 descriptors, bounded by the upgrade's deadline.
//
// The registry's own descriptors (files, connections, inherited sockets
// not yet made into a listener) are copied under the lock instead: a claim
// may close one while f runs. A descriptor passed is what the application
// or the registry holds, or a copy of it: the same open file description,
// so the successor's socket is as non-blocking as everyone else's.
//
// If the application has closed every value of one of es since the
// snapshot, f is not called and the error says which: the upgrade fails
// and this generation serves on; a second one passes on what is still
// open.
func (r *registry) withFds(es []*entry, f func(fds []int) error) error {
	fds := make([]int, len(es))
	conns := make([][]syscall.RawConn, len(es))
	var copies []int
	defer func() { closeFds(copies) }()
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrStopped
	}
	for i, e := range es {
		if e.fd < 0 {
			if len(e.conns) == 0 {
				r.mu.Unlock()
				return fmt.Errorf("baton: %s: %w during the upgrade", e.describe(), errClosedByApp)
			}
			// e.conns only grows, and closeAll replaces it: this
			// slice's elements never change.
			conns[i] = e.conns
			continue
		}
		nfd, err := dupFd(e.fd)
		if err != nil {
			r.mu.Unlock()
			return fmt.Errorf("baton: %s: %w", e.describe(), err)
		}
		copies = append(copies, nfd)
		fds[i] = nfd
	}
	r.mu.Unlock()
	return hold(es, conns, fds, 0, f)
}

// hold fills fds[i:] with the descriptors of conns[i:] (skipping the
// entries that have none: their fds are set), each read inside its
// RawConn.Control, and calls f from the innermost callback, so that every
// one stays open until f returns. Of an entry's values, the first still
// open is used. The recursion is as deep as a batch is long (128).
func hold(es []*entry, conns [][]syscall.RawConn, fds []int, i int, f func(fds []int) error) error {
	for i < len(es) && conns[i] == nil {
		i++
	}
	if i == len(es) {
		return f(fds)
	}
	for _, rc := range conns[i] {
		var err error
		if rc.Control(func(fd uintptr) {
			fds[i] = int(fd)
			err = hold(es, conns, fds, i+1, f)
		}) == nil {
			return err
		}
	}
	return fmt.Errorf("baton: %s: %w during the upgrade", es[i].describe(), errClosedByApp)
}

// closeAll closes every descriptor the registry holds itself. With
// unlinkOwn it also removes the files of unix sockets this generation
// created, and with unlinkInherited those of inherited ones: no generation
// will serve them any more.
func (r *registry) closeAll(unlinkOwn, unlinkInherited bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.closed = true
	r.byName, r.byAddr = nil, nil
	for _, e := range r.entries {
		unlink := unlinkOwn
		if e.inherited {
			unlink = unlinkInherited
		}
		if e.activated {
			// Whoever passed it (systemd, baton run) serves it on.
			unlink = false
		}
		if p := e.unixPath(); unlink && p != "" {
			os.Remove(p)
		}
		// The application's own values stay open: draining them is
		// its job.
		closeOwn(e)
		e.conns = nil
	}
	r.entries = nil
}
