//go:build linux

package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/batonhq/baton/supervisor"
)

// A master that runs a worker, here one whose config is broken: the first
// generation exits before it is ready, so Run returns a *GenerationError
// with the reason and the worker's last lines of stderr. (This test binary
// is the trampoline, as the program that embeds a master is: its TestMain
// calls ExecWorker for WorkerCommand.)
func Example() {
	dir, err := os.MkdirTemp("", "baton-example-") // 0700: the control socket's directory
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	m, err := supervisor.New(supervisor.Config{
		Program: "/bin/sh",
		Args:    []string{"-c", `echo "config error: no upstream" >&2; exit 3`},
		Listen:  []supervisor.ListenSpec{{Name: "web", Network: "tcp", Address: "127.0.0.1:0"}},
		Control: filepath.Join(dir, "control.sock"),
		Stderr:  io.Discard, // the worker's stderr, passed on; its tail is kept anyway
	})
	if err != nil {
		log.Fatal(err)
	}
	err = m.Run(context.Background())
	var gerr *supervisor.GenerationError
	if errors.As(err, &gerr) {
		fmt.Println("generation", gerr.Gen, gerr.Reason)
		fmt.Println(gerr.Stderr)
	}
	// Output:
	// generation 1 exited before it was ready: exit status 3
	// [config error: no upstream]
}

// The master of a program of your own: signals wired, and reloads asked
// from the program itself, for instance when its config changed.
func ExampleMaster_Reload() {
	m, err := supervisor.New(supervisor.Config{
		Program: "/usr/local/bin/app",
		Listen:  []supervisor.ListenSpec{{Name: "web", Network: "tcp", Address: ":8080"}},
	})
	if err != nil {
		log.Fatal(err)
	}
	m.HandleSignals() // SIGHUP reloads, SIGINT and SIGTERM stop
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		res, err := m.Reload(ctx)
		var gerr *supervisor.GenerationError
		switch {
		case errors.Is(err, supervisor.ErrReloadInProgress):
			log.Print("a reload runs already")
		case errors.As(err, &gerr):
			log.Printf("generation %d failed: %s; the old one serves on\n%v", gerr.Gen, gerr.Reason, gerr.Stderr)
		case err == nil:
			log.Printf("generation %d (pid %d) serves, pid %d drains", res.Gen, res.NewPID, res.OldPID)
		}
	}()
	var xerr *supervisor.ExitError
	if err := m.Run(context.Background()); errors.As(err, &xerr) {
		os.Exit(xerr.Code)
	}
}

// A client of the control socket branches on the code of a response, not
// on its text.
func ExampleCall() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := supervisor.Call(ctx, supervisor.DefaultControlPath("app"), supervisor.CmdReload)
	switch {
	case errors.Is(err, supervisor.ErrRefused):
		log.Fatal("the master is another user's")
	case err != nil:
		log.Fatalf("no master answers: %v", err)
	case errors.Is(resp.Err(), supervisor.ErrReloadInProgress):
		log.Print("a reload runs already: wait for it")
	case !resp.OK:
		log.Printf("reload failed (%s): %s", resp.Code, resp.Error)
	default:
		log.Printf("generation %d serves", resp.Result.Gen)
	}
}

func ExampleParseListen() {
	spec, err := supervisor.ParseListen("web=tcp://127.0.0.1:8080")
	fmt.Println(spec.Name, spec.Network, spec.Address, err)
	_, err = supervisor.ParseListen("web=http://:80")
	var lerr *supervisor.ListenError
	if errors.As(err, &lerr) {
		fmt.Println(lerr.Reason)
	}
	// Output:
	// web tcp 127.0.0.1:8080 <nil>
	// listen address "web=http://:80": unknown scheme "http"; want tcp, tcp4, tcp6, udp, udp4, udp6 or unix
}
