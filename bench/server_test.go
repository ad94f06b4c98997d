//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"syscall"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/internal/procfs"
	"github.com/cloudflare/tableflip"
	"golang.org/x/sys/unix"
)

// The helpers are configured by environment variables, which every
// successor inherits:
//
//	BENCH_LIB         baton, tableflip, (http only) reuseport, (idle only) none
//	BENCH_SOCKETS     listeners the handoff helper opens
//	BENCH_CPUPROFILE  if set, a directory: each process writes <pid>.prof
//	BENCH_OWNER       pid of the benchmark process; set by it
const (
	envLib        = "BENCH_LIB"
	envSockets    = "BENCH_SOCKETS"
	envCPUProfile = "BENCH_CPUPROFILE"
	envOwner      = "BENCH_OWNER"
)

// upgrader is what the handoff helper needs of either library.
type upgrader interface {
	// listener returns the listener registered as name: the predecessor's
	// if it passed one on, else a new one on 127.0.0.1:0.
	listener(name string) (net.Listener, error)
	ready() error
	waitForParent() error
	upgrade() error
	// retry reports an Upgrade error that goes away by itself.
	retry(err error) bool
	exit() <-chan struct{}
	stop()
}

func newUpgrader(lib string) (upgrader, error) {
	switch lib {
	case "baton":
		u, err := baton.New(baton.Options{})
		return batonUpgrader{u}, err
	case "tableflip":
		u, err := tableflip.New(tableflip.Options{})
		return tableflipUpgrader{u}, err
	case "reuseport":
		return newReuseport()
	}
	return nil, fmt.Errorf("unknown %s %q", envLib, lib)
}

type batonUpgrader struct{ u *baton.Upgrader }

func (b batonUpgrader) listener(name string) (net.Listener, error) {
	l, err := b.u.Listener(name)
	if !errors.Is(err, baton.ErrNoSuchName) {
		return l, err
	}
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if err := b.u.Add(name, l.(*net.TCPListener)); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (b batonUpgrader) ready() error          { return b.u.Ready() }
func (b batonUpgrader) waitForParent() error  { return b.u.WaitForParent(context.Background()) }
func (b batonUpgrader) upgrade() error        { return b.u.Upgrade() }
func (b batonUpgrader) retry(error) bool      { return false }
func (b batonUpgrader) exit() <-chan struct{} { return b.u.Exit() }
func (b batonUpgrader) stop()                 { b.u.Stop() }

type tableflipUpgrader struct{ u *tableflip.Upgrader }

func (t tableflipUpgrader) listener(name string) (net.Listener, error) {
	// The name goes where tableflip expects an address: it is only a key.
	l, err := t.u.Listener("tcp", name)
	if err != nil || l != nil {
		return l, err
	}
	l, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	if err := t.u.AddListener("tcp", name, l.(*net.TCPListener)); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (t tableflipUpgrader) ready() error         { return t.u.Ready() }
func (t tableflipUpgrader) waitForParent() error { return t.u.WaitForParent(context.Background()) }
func (t tableflipUpgrader) upgrade() error       { return t.u.Upgrade() }

// retry: tableflip's own loop learns of Ready and of the parent's exit
// asynchronously, and until it has, Upgrade refuses at once, before
// starting anything: "process is not ready yet" right after Ready, and
// "parent hasn't exited" a moment after WaitForParent has returned.
func (t tableflipUpgrader) retry(err error) bool {
	switch err.Error() {
	case "process is not ready yet", "parent hasn't exited":
		return true
	}
	return false
}

func (t tableflipUpgrader) exit() <-chan struct{} { return t.u.Exit() }
func (t tableflipUpgrader) stop()                 { t.u.Stop() }

// handoffMain is one generation of the handoff helper; see doc.go.
func handoffMain() {
	go watchOwner()
	defer startProfile()()
	n, err := strconv.Atoi(os.Getenv(envSockets))
	if err != nil || n < 1 {
		fail(fmt.Errorf("%s=%q: want a positive count", envSockets, os.Getenv(envSockets)))
	}
	u, err := newUpgrader(os.Getenv(envLib))
	if err != nil {
		fail(err)
	}
	ls := make([]net.Listener, 0, n)
	for i := range n {
		l, err := u.listener("l" + strconv.Itoa(i))
		if err != nil {
			fail(err)
		}
		ls = append(ls, l)
		go serve(l)
	}
	// Before Ready: once the benchmark may signal us, SIGHUP must not kill.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM)
	if err := u.ready(); err != nil {
		fail(err)
	}
	// tableflip refuses to upgrade while the parent lives; wait for it with
	// both libraries so that the chains are the same.
	if err := u.waitForParent(); err != nil {
		fail(err)
	}
	pid := os.Getpid()
	fmt.Printf("ready pid=%d fds=%d\n", pid, socketFds(ls))
	for {
		select {
		case s := <-sigs:
			if s != syscall.SIGHUP {
				u.stop()
				continue
			}
			took, err := timedUpgrade(u)
			if err != nil {
				fmt.Printf("upgrade-failed pid=%d err=%q\n", pid, err)
				continue
			}
			fmt.Printf("upgraded pid=%d ns=%d\n", pid, took.Nanoseconds())
		case <-u.exit():
			// Nothing to drain but the listeners: no client connects.
			for _, l := range ls {
				l.Close()
			}
			u.stop()
			return
		}
	}
}

// socketFds counts this process's descriptors that refer to the sockets of
// ls: the application's listeners and whatever copies the library keeps
// (links socket:[inode] in /proc/self/fd, the inodes read with fstat on
// each listener's descriptor); -1 if that cannot be read. The descriptor
// is reached through SyscallConn: Fd would make the socket blocking in
// every generation.
func socketFds(ls []net.Listener) int {
	inodes := make(map[uint64]bool, len(ls))
	for _, l := range ls {
		rc, err := l.(syscall.Conn).SyscallConn()
		if err != nil {
			return -1
		}
		var st unix.Stat_t
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = unix.Fstat(int(fd), &st) }); err != nil || serr != nil {
			return -1
		}
		inodes[st.Ino] = true
	}
	n, err := procfs.SocketFDs(os.Getpid(), inodes)
	if err != nil {
		return -1
	}
	return n
}

// timedUpgrade measures the Upgrade call that succeeds.
func timedUpgrade(u upgrader) (time.Duration, error) {
	for attempt := 0; ; attempt++ {
		start := time.Now()
		err := u.upgrade()
		took := time.Since(start)
		if err == nil || attempt == 5000 || !u.retry(err) {
			return took, err
		}
		time.Sleep(time.Millisecond)
	}
}

// idleMain opens one listener, with a library (New + Listen + Ready) or
// with plain net.Listen for BENCH_LIB=none, and sits idle until SIGTERM.
func idleMain() {
	go watchOwner()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	var (
		l    net.Listener
		err  error
		stop = func() {}
	)
	switch lib := os.Getenv(envLib); lib {
	case "none":
		l, err = net.Listen("tcp", "127.0.0.1:0")
	case "baton":
		var u *baton.Upgrader
		if u, err = baton.New(baton.Options{}); err == nil {
			if l, err = u.Listen("tcp", "127.0.0.1:0"); err == nil {
				err = u.Ready()
			}
			stop = u.Stop
		}
	case "tableflip":
		var u *tableflip.Upgrader
		if u, err = tableflip.New(tableflip.Options{}); err == nil {
			if l, err = u.Listen("tcp", "127.0.0.1:0"); err == nil {
				err = u.Ready()
			}
			stop = u.Stop
		}
	default:
		err = fmt.Errorf("unknown %s %q", envLib, lib)
	}
	if err != nil {
		fail(err)
	}
	go serve(l)
	fmt.Printf("ready pid=%d\n", os.Getpid())
	<-sigs
	l.Close()
	stop()
}

// watchOwner ends this process once the benchmark process is gone. The
// benchmark stops every generation itself; this is for when it cannot, say
// when it was killed, because an idle generation would otherwise serve on
// forever.
func watchOwner() {
	owner, err := strconv.Atoi(os.Getenv(envOwner))
	if err != nil {
		fail(fmt.Errorf("%s=%q: want the benchmark's pid", envOwner, os.Getenv(envOwner)))
	}
	for range time.Tick(500 * time.Millisecond) {
		if errors.Is(unix.Kill(owner, 0), unix.ESRCH) {
			fail(fmt.Errorf("benchmark process %d is gone", owner))
		}
	}
}

// serve accepts and hangs up, as a server that is not being measured.
func serve(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// startProfile starts a CPU profile if BENCH_CPUPROFILE names a directory,
// and returns what stops it.
func startProfile() func() {
	dir := os.Getenv(envCPUProfile)
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, strconv.Itoa(os.Getpid())+".prof"))
	if err != nil {
		fail(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		fail(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "bench helper (pid %d): %v\n", os.Getpid(), err)
	os.Exit(4)
}
