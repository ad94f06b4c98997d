//go:build linux

// Command faultserver is the demo server (the contract of
// examples/httpserver/server: GET / answers "pid=<pid> gen=<generation>",
// ?delay= sleeps first) with fault hooks, for the supervisor-restart fault
// tests in integration/supervisors. It is a test fixture, not an example.
//
// -fault PATH names a file with one line, "ROLE POINT ACTION COUNT":
//
//	ROLE    instance (a process ./run started) or interim (one an
//	        instance started to hold the sockets during a restart)
//	POINT   before-new, before-listen, after-listen (not serving
//	        yet), before-ready (serving), after-ready
//	ACTION  exit (status 3), hang (sleep until killed), sigstop (stop
//	        itself), gate (wait until the file PATH.open exists, having
//	        written PATH.waiting.<pid>), exit@D (exit with status 3 D
//	        after POINT, serving meanwhile), kill@D (SIGKILL itself D
//	        after POINT)
//	COUNT   how many processes of ROLE that reach POINT act; each one
//	        that does decrements it, under a lock
//
// -probation D is baton.Options.Probation.
//
// Every action is logged first ("fault: ...") to stderr, which the run
// script sends to the service's output.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/httpdrain"
)

// gateTimeout bounds a gate: a test that never opens it must not leave a
// process behind.
const gateTimeout = 60 * time.Second

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("faultserver", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "TCP address")
	pidFile := fs.String("pid-file", "", "PID file")
	drain := fs.Duration("drain", 5*time.Second, "drain deadline")
	timeout := fs.Duration("upgrade-timeout", baton.DefaultUpgradeTimeout, "upgrade timeout")
	control := fs.String("control", "", "control socket")
	faultFile := fs.String("fault", "", "fault file")
	probation := fs.Duration("probation", 0, "probation")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}

	// baton reads and scrubs this marker in New; the role must be known
	// before. (The variable is baton's private business; this fixture
	// peeks at it because it tests exactly that business.)
	role := "instance"
	if _, ok := os.LookupEnv("BATON_INTERIM"); ok {
		role = "interim"
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil)).With("pid", os.Getpid(), "role", role)
	fault := func(point string) { hook(log, *faultFile, role, point) }

	fault("before-new")
	upg, err := baton.New(baton.Options{
		PIDFile:        *pidFile,
		UpgradeTimeout: *timeout,
		Control:        *control,
		Probation:      *probation,
		Logger:         log,
	})
	if err != nil {
		log.Error("cannot take over", "err", err)
		return 1
	}
	defer upg.Stop()
	log = log.With("gen", upg.Generation())

	fault("before-listen")
	ln, err := upg.Listen("tcp", *listen)
	if err != nil {
		log.Error("cannot listen", "err", err)
		return 1
	}
	fault("after-listen")
	// Serving before Ready, as the demo server does: both generations
	// accept from the shared queue until the old one drains.
	// IdleGrace above the default: on a machine loaded by other test
	// runs (load average 30 on 2 cores was seen) the load generator's
	// keep-alive clients can go unscheduled for over the default 500ms;
	// their connections then look idle to a draining generation, which
	// closes them just as the client sends its next request. That race
	// is HTTP/1.1's (see httpdrain), not the fault under test.
	srv := httpdrain.New(&http.Server{Handler: handler(upg.Generation()), ReadHeaderTimeout: 10 * time.Second},
		httpdrain.Options{Logger: log, IdleGrace: 2 * time.Second})
	// Signals before serving: a restart signal that found no handler
	// would kill the process with the connections it had accepted.
	upg.HandleSignals()
	go srv.Serve(ln)

	fault("before-ready")
	if err := upg.Ready(); err != nil {
		log.Error("cannot become ready", "err", err)
		return 1
	}
	log.Info("serving", "addr", ln.Addr().String())
	fault("after-ready")

	<-upg.Exit()
	ctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	start := time.Now()
	if err := srv.Drain(ctx); err != nil {
		log.Warn("drained at the deadline", "err", err)
	} else {
		log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	}
	if upg.ExecRequested() {
		// SIGHUP under the supervisor: upgrade in place, keeping the pid
		// it tracks. Exec returns only if it could not re-execute.
		log.Error("cannot upgrade in place", "err", upg.Exec())
		return 1
	}
	return 0
}

func handler(gen int) http.Handler {
	pid := os.Getpid()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("delay"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > time.Minute {
				http.Error(w, "bad delay", http.StatusBadRequest)
				return
			}
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
		fmt.Fprintf(w, "pid=%d gen=%d\n", pid, gen)
	})
}

// hook acts on the fault file at point, if it says so for role.
func hook(log *slog.Logger, path, role, point string) {
	if path == "" {
		return
	}
	action, err := take(path, role, point)
	if err != nil {
		log.Error("fault file", "err", err)
		os.Exit(4)
	}
	if action == "" {
		return
	}
	log.Warn("fault: "+action+" "+point, "point", point, "action", action)
	if how, after, ok := strings.Cut(action, "@"); ok && (how == "exit" || how == "kill") {
		d, err := time.ParseDuration(after)
		if err != nil {
			log.Error("fault: bad delay", "action", action, "err", err)
			os.Exit(4)
		}
		time.AfterFunc(d, func() {
			log.Warn("fault: " + how + " now")
			if how == "kill" {
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
			os.Exit(3)
		})
		return
	}
	switch action {
	case "exit":
		os.Exit(3)
	case "hang":
		time.Sleep(time.Hour) // until the incumbent's timeout kills us
		os.Exit(5)
	case "sigstop":
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
		log.Warn("fault: continued after SIGSTOP")
	case "gate":
		marker := fmt.Sprintf("%s.waiting.%d", path, os.Getpid())
		if err := os.WriteFile(marker, nil, 0o600); err != nil {
			log.Error("fault: gate", "err", err)
			os.Exit(4)
		}
		deadline := time.Now().Add(gateTimeout)
		for {
			if _, err := os.Stat(path + ".open"); err == nil {
				break
			}
			if time.Now().After(deadline) {
				log.Error("fault: the gate never opened", "waited", gateTimeout)
				os.Exit(4)
			}
			time.Sleep(10 * time.Millisecond)
		}
		log.Warn("fault: gate open " + point)
	default:
		log.Error("fault: unknown action", "action", action)
		os.Exit(4)
	}
}

// take decrements the fault's count if it applies to role at point, and
// returns its action; "" if it does not apply.
func take(path, role, point string) (string, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	b := make([]byte, 256)
	n, _ := f.ReadAt(b, 0)
	fields := strings.Fields(string(b[:n]))
	if len(fields) != 4 {
		return "", fmt.Errorf("%s: %q: want ROLE POINT ACTION COUNT", path, b[:n])
	}
	count, err := strconv.Atoi(fields[3])
	if err != nil {
		return "", fmt.Errorf("%s: count %q: %w", path, fields[3], err)
	}
	if fields[0] != role || fields[1] != point || count <= 0 {
		return "", nil
	}
	line := fmt.Sprintf("%s %s %s %d\n", fields[0], fields[1], fields[2], count-1)
	if err := f.Truncate(0); err != nil {
		return "", err
	}
	if _, err := f.WriteAt([]byte(line), 0); err != nil {
		return "", err
	}
	return fields[2], nil
}
