package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
)

const demoUsage = `Usage: baton demo [flags]

Starts the demo server (this binary, as "baton demo-server"), drives HTTP
load at it on loopback from clients that never retry — a new connection per
request and keep-alive connections; with -mode pausing, keep-alive clients
that POST and pause up to -max-pause between requests, as a connection pool
behind a proxy does — performs upgrades (SIGHUP: new process,
same sockets) while slow requests cross them, and reports every failure.
Exits 0 only if no request and no upgrade failed.

Flags:
`

const demoExamples = `
Examples:
  baton demo                          10 upgrades, 16 clients per mode
  baton demo -upgrades 50 -mode keepalive
  baton demo -upgrades 20 -mode pausing   POSTs with pauses up to twice the server's idle grace
  baton demo -json > report.json
`

// runDemo is "baton demo".
func runDemo(ctx context.Context, u ui, args []string) int {
	fs := flag.NewFlagSet("baton demo", flag.ContinueOnError)
	fs.SetOutput(u.stderr)
	upgrades := fs.Int("upgrades", loadgen.DefaultUpgrades, "number of upgrades to perform")
	clients := fs.Int("clients", loadgen.DefaultClients, "concurrent clients per connection mode")
	mode := fs.String("mode", "both", "connection `mode`: fresh (a new connection per request), keepalive, both, or pausing (keep-alive POSTs with pauses)")
	maxPause := fs.Duration("max-pause", loadgen.DefaultMaxPause, "with -mode pausing, the longest pause of a client between two requests")
	slow := fs.Duration("slow", loadgen.DefaultSlowDelay, "delay of the slow request started before each upgrade")
	listen := fs.String("listen", "127.0.0.1:0", "loopback `address` for the demo server (port 0: any free port)")
	drain := fs.Duration("drain", defaultDemoDrain, "drain deadline of each retiring generation")
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout")
	fs.Usage = func() {
		fmt.Fprint(u.stderr, demoUsage)
		fs.PrintDefaults()
		fmt.Fprint(u.stderr, demoExamples)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	modes, err := parseModes(*mode)
	switch {
	case err != nil:
		u.errorf("%v", err)
		return exitUsage
	case fs.NArg() > 0:
		u.errorf("unexpected argument %q", fs.Arg(0))
		u.hint(`"baton demo -h" lists the flags`)
		return exitUsage
	case *upgrades < 1 || *clients < 1:
		u.errorf("-upgrades and -clients must be at least 1")
		return exitUsage
	case *maxPause <= 0:
		u.errorf("-max-pause must be more than 0")
		return exitUsage
	}
	addr, err := demoAddr(*listen)
	if err != nil {
		u.errorf("-listen %s: %v", *listen, err)
		u.hint("the demo sends traffic to loopback only: use 127.0.0.1:PORT or [::1]:PORT")
		return exitUsage
	}

	dir, err := os.MkdirTemp("", "baton-demo-")
	if err != nil {
		u.errorf("%v", err)
		return exitNoStart
	}
	defer os.RemoveAll(dir)
	srv, err := startDemoServer(dir, addr, *drain)
	if err != nil {
		u.errorf("starting the demo server: %v", err)
		return exitNoStart
	}
	defer func() {
		if err := srv.stop(*drain + stopMargin); err != nil {
			u.errorf("stopping the demo server: %v", err)
		}
	}()
	if err := srv.waitServing(ctx, demoStartTimeout); err != nil {
		u.errorf("the demo server did not start: %v", err)
		if log := srv.log(); log != "" {
			fmt.Fprintf(u.stderr, "its log:\n%s\n", tail(log, 20))
		}
		return exitNoStart
	}
	u.infof("demo server pid %d on http://%s/ — %d upgrades, %d clients per mode (%s)", srv.pid(), srv.addr, *upgrades, *clients, *mode)

	rep, err := loadgen.Run(ctx, loadgen.Config{
		URL:       "http://" + srv.addr + "/",
		Clients:   *clients,
		Modes:     modes,
		Upgrades:  *upgrades,
		Upgrade:   srv.upgrade,
		SlowDelay: *slow,
		MaxPause:  *maxPause,
		Progress:  loadgen.NewProgressBar(u.stderr, loadgen.IsTerminal(os.Stderr)),
	})
	if err != nil {
		u.errorf("%v", err)
		fmt.Fprintf(u.stderr, "server log:\n%s\n", tail(srv.log(), 20))
		return exitNoStart
	}
	if *asJSON {
		enc := json.NewEncoder(u.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.WriteText(u.stdout)
	}
	if rep.Failed() {
		fmt.Fprintf(u.stderr, "server log (last lines):\n%s\n", tail(srv.log(), 20))
		return exitFailed
	}
	if rep.Stopped != "" {
		// Nothing failed, but not every upgrade was tried: not a proof.
		return exitFailed
	}
	return exitOK
}

func parseModes(s string) ([]loadgen.Mode, error) {
	switch s {
	case "both":
		return []loadgen.Mode{loadgen.Fresh, loadgen.KeepAlive}, nil
	case "fresh":
		return []loadgen.Mode{loadgen.Fresh}, nil
	case "keepalive":
		return []loadgen.Mode{loadgen.KeepAlive}, nil
	case "pausing":
		return []loadgen.Mode{loadgen.Pausing}, nil
	}
	return nil, fmt.Errorf("-mode %q: want fresh, keepalive, both or pausing", s)
}

// demoAddr checks that addr is on loopback and, for port 0, picks a free
// port (the server's address must be known before it starts).
func demoAddr(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", fmt.Errorf("%q is not a loopback address", host)
	}
	if port != "0" {
		return addr, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// demoServer is the server generations "baton demo" started, seen from
// outside as an operator sees them: a PID file, a log, signals.
type demoServer struct {
	addr    string
	pidFile string
	logFile string
	first   *os.Process
	gens    *generations
}

func startDemoServer(dir, addr string, drain time.Duration) (*demoServer, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	s := &demoServer{
		addr:    addr,
		pidFile: filepath.Join(dir, "server.pid"),
		logFile: filepath.Join(dir, "server.log"),
	}
	log, err := os.Create(s.logFile)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	s.gens = newGenerations()
	s.first, err = s.gens.spawn(self, []string{self, "demo-server",
		"-listen", addr, "-pid-file", s.pidFile, "-drain", drain.String()},
		&os.ProcAttr{Files: []*os.File{nil, log, log}})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *demoServer) log() string {
	b, _ := os.ReadFile(s.logFile)
	return string(b)
}

// pid reads the PID file: the serving generation, or 0.
func (s *demoServer) pid() int {
	b, err := os.ReadFile(s.pidFile)
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func (s *demoServer) waitServing(ctx context.Context, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if s.pid() != 0 {
			c, err := net.DialTimeout("tcp", s.addr, demoDialTimeout)
			if err == nil {
				c.Close()
				return nil
			}
		}
		if !s.gens.alive(s.first.Pid) {
			return errors.New("it exited")
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PID file or no answer on %s after %v", s.addr, d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(demoStartPoll):
		}
	}
}

// upgrade does what an operator does: SIGHUP to the pid in the PID file,
// then waits until the PID file names the new generation (it is written
// once the successor is ready), or the log says the upgrade failed.
func (s *demoServer) upgrade(ctx context.Context) error {
	old := s.pid()
	if old == 0 {
		return errors.New("no PID file")
	}
	mark := len(s.log())
	p, _ := os.FindProcess(old)
	if err := p.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("SIGHUP to pid %d: %w", old, err)
	}
	deadline := time.Now().Add(demoUpgradeTimeout)
	for {
		if pid := s.pid(); pid != 0 && pid != old {
			return nil
		}
		if log := s.log(); len(log) > mark {
			for _, line := range strings.Split(log[mark:], "\n") {
				if strings.Contains(line, "upgrade failed") {
					return errors.New(line)
				}
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pid %d did not hand over within %v", old, demoUpgradeTimeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pidFilePoll):
		}
	}
}

// stop sends SIGTERM to the serving generation and waits for every
// generation to be gone.
func (s *demoServer) stop(d time.Duration) error {
	pid := s.pid()
	if pid == 0 {
		pid = s.first.Pid
	}
	if p, err := os.FindProcess(pid); err == nil {
		p.Signal(syscall.SIGTERM)
	}
	return s.gens.wait(pid, d)
}

// The demo's pace and patience.
const (
	// defaultDemoDrain: the slow request before each upgrade lasts 1s
	// by default; 10s lets it, and any other, finish with room to spare.
	defaultDemoDrain = 10 * time.Second
	// stopMargin is what the last generation gets beyond its drain
	// deadline to exit once told to stop: the runtime's exit and the
	// reaping, on a loaded machine.
	stopMargin = 10 * time.Second
	// demoStartTimeout bounds the first start of the demo server: a Go
	// binary that binds one socket starts in milliseconds; 30s is for a
	// machine under heavy load, not for a server that is slow.
	demoStartTimeout = 30 * time.Second
	// demoDialTimeout bounds the loopback connect that tells the server
	// answers: immediate unless the machine cannot schedule.
	demoDialTimeout = time.Second
	// demoStartPoll: the PID file and the port are the operator's view,
	// which says nothing when it changes; they are looked at this often.
	demoStartPoll = 20 * time.Millisecond
	// demoUpgradeTimeout is above the library's one-minute
	// UpgradeTimeout, so that a failed upgrade is reported by the server
	// ("upgrade failed" in its log) before the demo gives up on it.
	demoUpgradeTimeout = 2 * time.Minute
	// pidFilePoll: the upgrade latency in the report is at most this
	// much too long.
	pidFilePoll = 5 * time.Millisecond
)
