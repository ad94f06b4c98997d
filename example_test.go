package baton_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/httpdrain"
)

// New may be called once per process, so the examples that use an
// Upgrader are compiled but not run (they also wait for signals); those
// that run show the configuration and the errors.

// A whole generation of an HTTP server: the same code runs the first time
// and after every upgrade. SIGHUP starts the successor, which takes the
// very same socket; this generation drains once it is ready. SIGTERM or
// SIGINT drains and stops for good. examples/httpserver is the same
// program with the reasons for each step.
func Example() {
	upg, err := baton.New(baton.Options{PIDFile: "/run/app/app.pid"})
	if err != nil {
		// The predecessor's handoff was malformed (or this is a second
		// New). Exit: the predecessor is told why and serves on.
		log.Fatal(err)
	}
	// Stop comes last, after the drain: if no successor took over, it
	// removes the PID file (and the files of Unix sockets).
	defer upg.Stop()

	// The first generation binds; every later one gets the same socket.
	ln, err := upg.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	srv := httpdrain.New(&http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprintf(w, "hello from generation %d\n", upg.Generation())
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}, httpdrain.Options{})
	go srv.Serve(ln) // before Ready: the predecessor stops accepting then

	// Before Ready: a SIGHUP's default action would kill the process.
	upg.HandleSignals()
	if err := upg.Ready(); err != nil {
		log.Fatal(err)
	}

	<-upg.Exit() // a successor serves now, or Stop was called
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Drain(ctx); err != nil {
		log.Print(err) // the deadline closed what was left
	}
}

// Upgrade called by the program itself, here from an admin endpoint
// instead of a signal. It returns once the successor is ready (and this
// generation's Exit channel is closed), or has failed and been killed:
// then this generation serves on, and the error says why.
func ExampleUpgrader_Upgrade() {
	upg, err := baton.New(baton.Options{UpgradeTimeout: 30 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer upg.Stop()

	// The admin socket is handed over too, so the successor can be
	// upgraded the same way.
	admin, err := upg.Listen("tcp", "127.0.0.1:9090")
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /upgrade", func(w http.ResponseWriter, r *http.Request) {
		err := upg.Upgrade()
		var ce *baton.ChildError
		switch {
		case err == nil:
			fmt.Fprintln(w, "upgraded: the successor serves, this generation drains")
		case errors.Is(err, baton.ErrUpgradeInProgress):
			http.Error(w, "an upgrade is already running", http.StatusConflict)
		case errors.As(err, &ce):
			// The successor failed: still serving, nothing changed.
			http.Error(w, err.Error(), http.StatusInternalServerError)
		default:
			// ErrNotReady, ErrStopped: nothing to hand over.
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	srv := httpdrain.New(&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, httpdrain.Options{})
	go srv.Serve(admin)

	if err := upg.Ready(); err != nil {
		log.Fatal(err)
	}
	<-upg.Exit()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Drain(ctx)
}

// A TCP listener and a UDP socket on the same port, both handed over. A
// datagram socket has no accept queue: both generations read from it
// until this one closes its copy, and each datagram is read by one of
// them, never lost, never both.
func ExampleUpgrader_ListenPacket() {
	upg, err := baton.New(baton.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer upg.Stop()

	ln, err := upg.Listen("tcp", "127.0.0.1:5353")
	if err != nil {
		log.Fatal(err)
	}
	pc, err := upg.ListenPacket("udp", "127.0.0.1:5353")
	if err != nil {
		log.Fatal(err)
	}
	srv := httpdrain.New(&http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 10 * time.Second}, httpdrain.Options{})
	go srv.Serve(ln)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return // closed: the successor reads now
			}
			pc.WriteTo(buf[:n], addr) // echo
		}
	}()

	upg.HandleSignals()
	if err := upg.Ready(); err != nil {
		log.Fatal(err)
	}
	<-upg.Exit()
	pc.Close() // stop reading: what arrives from now on is the successor's
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Drain(ctx)
}

// Under systemd the code does not change. With socket activation
// (app.socket: ListenStream=127.0.0.1:8080) New adopts the socket systemd
// made, and Listen for its address returns it: the port is never closed,
// even across "systemctl restart". Run by hand, the same Listen binds.
// Under Type=notify, Ready sends READY=1, and an upgrade makes the
// successor the main process (MAINPID=) before this one drains; nothing
// is sent when NOTIFY_SOCKET is unset. FDStore also keeps the sockets in
// systemd's descriptor store (FileDescriptorStoreMax=), so that a crash
// or a restart does not close them either.
//
//	# app.service
//	[Service]
//	Type=notify
//	ExecStart=/usr/local/bin/app
//	ExecReload=/bin/kill -HUP $MAINPID
//	FileDescriptorStoreMax=16
func ExampleUpgrader_Listen_systemd() {
	upg, err := baton.New(baton.Options{
		FDStore: true, // ignored, with a warning, when systemd is not there
		Logger:  slog.Default(),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer upg.Stop()

	// Activated by systemd, inherited from a predecessor, or new.
	ln, err := upg.Listen("tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	srv := httpdrain.New(&http.Server{Handler: http.NotFoundHandler(), ReadHeaderTimeout: 10 * time.Second}, httpdrain.Options{})
	go srv.Serve(ln)

	upg.HandleSignals() // "systemctl reload" sends SIGHUP (ExecReload)
	if err := upg.Ready(); err != nil {
		log.Fatal(err)
	}
	<-upg.Exit()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Drain(ctx)
}

// Anything with a descriptor can be passed on by name: here a file of
// state that the first generation creates and every later one reopens.
func ExampleUpgrader_Add() {
	upg, err := baton.New(baton.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer upg.Stop()

	state, err := upg.File("state")
	if errors.Is(err, baton.ErrNoSuchName) {
		// First generation: nothing was passed on.
		state, err = os.CreateTemp("", "app-state-")
		if err == nil {
			os.Remove(state.Name()) // kept alive by its descriptor alone
			err = upg.Add("state", state)
		}
	}
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(state)
	log.Printf("generation %d starts with %d bytes of state", upg.Generation(), len(b))
	// ... Ready, serve, <-upg.Exit(), drain.
}

// What the zero Options means, and the values worth setting.
func ExampleOptions() {
	opts := baton.Options{
		// Resolved against the directory the process started in, and
		// written once a generation is ready: it always names a process
		// that serves.
		PIDFile: "app.pid",
		// Zero means DefaultUpgradeTimeout.
		UpgradeTimeout: 2 * time.Minute,
		// Nil is silent.
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	_ = opts // baton.New(opts)
	fmt.Println("a successor must be ready within", baton.DefaultUpgradeTimeout)
	// Output: a successor must be ready within 1m0s
}

// How a caller tells Upgrade's failures apart, with errors.Is and
// errors.As: a successor that failed is a *ChildError, and this
// generation serves on whatever the error.
func ExampleChildError() {
	explain := func(err error) string {
		var ce *baton.ChildError
		var exit *exec.ExitError
		switch {
		case err == nil:
			return "upgraded"
		case errors.Is(err, baton.ErrUpgradeInProgress):
			return "busy: one upgrade at a time"
		case errors.Is(err, baton.ErrNotReady), errors.Is(err, baton.ErrStopped):
			return "nothing to hand over"
		case errors.As(err, &ce) && errors.Is(err, baton.ErrTimeout):
			return fmt.Sprintf("successor %d was not ready in time and was killed", ce.PID)
		case errors.As(err, &ce) && errors.As(err, &exit):
			return fmt.Sprintf("successor %d exited with status %d", ce.PID, exit.ExitCode())
		case errors.As(err, &ce) && ce.PID == 0:
			return "successor " + ce.Path + " did not start"
		case errors.As(err, &ce):
			return fmt.Sprintf("successor %d failed", ce.PID)
		}
		return "unexpected: " + err.Error()
	}

	// Errors as Upgrade returns them.
	exitStatus3 := exec.Command("sh", "-c", "exit 3").Run()
	for _, err := range []error{
		nil,
		baton.ErrUpgradeInProgress,
		&baton.ChildError{PID: 4242, Path: "/usr/local/bin/app", Err: fmt.Errorf("not ready after 1m0s, killed: %w", baton.ErrTimeout)},
		&baton.ChildError{PID: 4243, Path: "/usr/local/bin/app", Err: exitStatus3},
		&baton.ChildError{Path: "/usr/local/bin/app", Err: os.ErrNotExist},
	} {
		fmt.Println(explain(err))
	}
	// Output:
	// upgraded
	// busy: one upgrade at a time
	// successor 4242 was not ready in time and was killed
	// successor 4243 exited with status 3
	// successor /usr/local/bin/app did not start
}

// The generation link: long-lived connections (a chat, a WebSocket after
// its upgrade, a database protocol) move to the successor instead of
// being closed. The successor asks for them before Ready; this
// generation, once Exit is closed, hands each over at a boundary of its
// protocol — here, between two lines — with its state. A connection the
// successor did not acknowledge is still ours: serve it on, or close it
// gracefully.
func ExampleUpgrader_HandOver() {
	upg, err := baton.New(baton.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer upg.Stop()
	ln, err := upg.Listen("tcp", ":7000")
	if err != nil {
		log.Fatal(err)
	}
	handed, err := upg.Handed("chat") // before Ready
	if err != nil {
		log.Fatal(err)
	}
	serve := func(c net.Conn, state []byte) {
		// ... serve lines on c; at Exit, between two lines:
		<-upg.Exit()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := upg.HandOver(ctx, "chat", c.(syscall.Conn), state); err != nil {
			// Still ours: say goodbye and close.
			io.WriteString(c, "server restarting, please reconnect\n")
			c.Close()
		}
	}
	go func() {
		for {
			c, err := handed.Accept()
			if err != nil {
				return
			}
			hc := c.(*baton.HandedConn)
			go serve(hc, hc.State) // *HandedConn can be handed on again
		}
	}()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c, nil)
		}
	}()
	if err := upg.Ready(); err != nil {
		log.Fatal(err)
	}
	<-upg.Exit()
	// ... wait until every connection is handed over or closed, then exit.
}

// State blobs cross the handoff: the predecessor's are there right after
// New; what this generation sets goes to its successor.
func ExampleUpgrader_SetState() {
	upg, err := baton.New(baton.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer upg.Stop()
	counter := 0
	if b, ok := upg.PredecessorState("requests"); ok {
		counter, _ = strconv.Atoi(string(b))
	}
	// ... serve, counting requests; before an upgrade, or as it changes:
	if err := upg.SetState("requests", []byte(strconv.Itoa(counter))); err != nil {
		log.Print(err)
	}
}
