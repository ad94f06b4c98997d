package systemd_test

import (
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/batonhq/baton/systemd"
)

// A service's life as systemd hears it. The same code runs by hand: there
// NOTIFY_SOCKET is unset, NewNotifier returns nil, and every call on the
// nil Notifier does nothing.
//
//	[Service]
//	Type=notify
//	WatchdogSec=30s
//	ExecStart=/usr/local/bin/app
func ExampleNewNotifier() {
	n, err := systemd.NewNotifier()
	if err != nil {
		log.Fatal(err) // NOTIFY_SOCKET is set but malformed
	}
	n.Status("loading the configuration")
	// ... listen, initialise ...
	if err := n.Ready(); err != nil {
		log.Print(err) // systemd is there but did not take it: say so
	}

	// With WatchdogSec=, systemd restarts the service unless it hears
	// WATCHDOG=1 within the interval; ping at half of it.
	if d, ok := n.WatchdogInterval(); ok {
		go func() {
			for range time.Tick(d / 2) {
				n.Watchdog()
			}
		}()
	}

	// ... serve until told to stop ...
	n.Stopping()
}

// A nil *Notifier, what NewNotifier returns when no service manager
// listens, accepts every call and does nothing, so code that notifies
// needs no "if n != nil".
func ExampleNotifier() {
	n := systemd.NewNotifierFrom("") // as NewNotifier without NOTIFY_SOCKET
	fmt.Println(n == nil)
	fmt.Println(n.Ready(), n.Status("serving"), n.Reloading(), n.Stopping())
	_, ok := n.WatchdogInterval()
	fmt.Println(ok)
	// Output:
	// true
	// <nil> <nil> <nil> <nil>
	// false
}

// Listeners returns what systemd passed to this process. Started by hand —
// or, as here, by go test — nothing was passed, and that is not an error:
// the program binds its own sockets.
func ExampleListeners() {
	acts, err := systemd.Listeners()
	if err != nil {
		log.Fatal(err) // LISTEN_* meant for this process but malformed
	}
	fmt.Println(len(acts), "descriptors from systemd")
	// Output: 0 descriptors from systemd
}

// Socket activation: take the socket systemd made for an address, and bind
// only if there is none. With app.socket beside app.service:
//
//	[Socket]
//	ListenStream=127.0.0.1:8080
//	FileDescriptorName=http
func ExampleActivated_Addr() {
	const want = "127.0.0.1:8080"
	acts, err := systemd.Listeners()
	if err != nil {
		log.Fatal(err)
	}
	var ln net.Listener
	for _, a := range acts {
		network, addr, listening, err := a.Addr()
		if err != nil || network != "tcp" || addr != want || !listening {
			continue // not this one; a real program would use or close it
		}
		// NewFile and FileListener may touch the descriptor's blocking
		// mode: harmless here, where nobody serves on it yet.
		f := os.NewFile(uintptr(a.Fd), a.Name)
		ln, err = net.FileListener(f) // a duplicate: f can go
		f.Close()
		if err != nil {
			log.Fatal(err)
		}
	}
	if ln == nil {
		// Not socket-activated: started by hand.
		if ln, err = net.Listen("tcp", want); err != nil {
			log.Fatal(err)
		}
	}
	defer ln.Close()
	// ... serve on ln ...
}

// The rules of LISTEN_PID, LISTEN_FDS and LISTEN_FDNAMES, without the
// environment: descriptors start at 3, and are for the process LISTEN_PID
// names only.
func ExampleParseListenEnv() {
	acts, err := systemd.ParseListenEnv("4242", "2", "http:metrics", 4242)
	fmt.Println(acts, err)

	// Meant for another process (a parent that did not clear them): none.
	acts, err = systemd.ParseListenEnv("4242", "2", "http:metrics", 4243)
	fmt.Println(acts, err)

	// Without names, every descriptor is "unknown".
	acts, err = systemd.ParseListenEnv("4242", "1", "", 4242)
	fmt.Println(acts, err)
	// Output:
	// [{http 3} {metrics 4}] <nil>
	// [] <nil>
	// [{unknown 3}] <nil>
}

// Hand descriptors to systemd's store (FileDescriptorStoreMax= on the
// unit): they come back with the same name through Listeners the next time
// the service starts, after a restart or a crash.
func ExampleNotifier_FDStore() {
	n, err := systemd.NewNotifier()
	if err != nil {
		log.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	// The descriptor through SyscallConn, never File or Fd: those make a
	// shared socket blocking for every process that holds it.
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		log.Fatal(err)
	}
	rc.Control(func(fd uintptr) {
		err = n.FDStore("http", int(fd))
	})
	if err != nil {
		log.Print(err)
	}
}
