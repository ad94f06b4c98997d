package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/batonhq/baton/internal/loadgen"
)

// defaultReadyTimeout bounds one upgrade in "baton verify": the reload
// command and, with -pid-file, the wait for the new pid. It is longer than
// baton.DefaultUpgradeTimeout (1m) so that a successor the library would
// still accept is not counted as failed here first.
const defaultReadyTimeout = 2 * time.Minute

// reloadOutputMax is how much of a reload command's output is kept for the
// report: the end, where the error usually is.
const reloadOutputMax = 2 << 10

const verifyUsage = `Usage: baton verify -url URL -reload CMD [flags]

Drives HTTP load at your running server from clients that never retry — a
new connection per request and keep-alive connections — runs CMD (with
/bin/sh -c) to upgrade it, again and again, while a slow request crosses
each upgrade, and reports every failed request. The same engine and report
as "baton demo", pointed at your own service; it does not start or stop it.

An upgrade is done when CMD exits 0; with -pid-file, when the PID file also
names a new pid. Use -pid-file when CMD only signals (kill -HUP returns at
once). A CMD that exits non-zero is a failed upgrade; its output is in the
report.

Exits 0 if no request and no upgrade failed, 1 if any did (or the run was
interrupted), 2 on a bad command line, 3 if the server never answered before
the first upgrade.

Flags:
`

const verifyExamples = `
Examples:
  baton verify -url http://127.0.0.1:8080/ \
      -reload 'kill -HUP $(cat /run/app.pid)' -pid-file /run/app.pid
  baton verify -url http://127.0.0.1:8080/ -reload 'systemctl reload app' \
      -upgrades 20 -mode keepalive -json > report.json
  baton verify -url http://[::1]:8080/healthz -reload './deploy.sh' -slow 0
`

// runVerify is "baton verify".
func runVerify(ctx context.Context, u ui, args []string) int {
	fs := flag.NewFlagSet("baton verify", flag.ContinueOnError)
	fs.SetOutput(u.stderr)
	rawURL := fs.String("url", "", "`URL` every client requests with GET: http:// only, on loopback unless -allow-remote (required)")
	reload := fs.String("reload", "", "shell `command` that upgrades the server, run with /bin/sh -c; non-zero exit = failed upgrade (required)")
	pidFile := fs.String("pid-file", "", "after the reload command, wait until the PID file at `path` names a new pid (baton writes it once the successor is ready)")
	readyTimeout := fs.Duration("ready-timeout", defaultReadyTimeout, "how long one upgrade may take: the reload command plus the -pid-file wait")
	upgrades := fs.Int("upgrades", loadgen.DefaultUpgrades, "number of upgrades to perform")
	clients := fs.Int("clients", loadgen.DefaultClients, "concurrent clients per connection mode")
	mode := fs.String("mode", "both", "connection `mode`: fresh (a new connection per request), keepalive, both, or pausing (keep-alive POSTs with pauses)")
	maxPause := fs.Duration("max-pause", loadgen.DefaultMaxPause, "with -mode pausing, the longest pause of a client between two requests (make it twice your server's idle timeout while draining)")
	slow := fs.Duration("slow", loadgen.DefaultSlowDelay, "delay asked (?delay=) of the slow request started before each upgrade; 0: no slow requests")
	warmup := fs.Duration("warmup", loadgen.DefaultWarmup, "load before the first upgrade; the server must answer within it")
	settle := fs.Duration("settle", loadgen.DefaultSettle, "load between upgrades and after the last one")
	allowRemote := fs.Bool("allow-remote", false, "allow a -url host that is not loopback")
	asJSON := fs.Bool("json", false, "print the report as JSON on stdout")
	fs.Usage = func() {
		fmt.Fprint(u.stderr, verifyUsage)
		fs.PrintDefaults()
		fmt.Fprint(u.stderr, verifyExamples)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	modes, modeErr := parseModes(*mode)
	switch {
	case fs.NArg() > 0:
		u.errorf("unexpected argument %q", fs.Arg(0))
		u.hint(`quote the reload command: -reload 'kill -HUP $(cat /run/app.pid)'`)
		return exitUsage
	case *rawURL == "":
		u.errorf("-url is required")
		u.hint("point it at your running server, such as -url http://127.0.0.1:8080/")
		return exitUsage
	case strings.TrimSpace(*reload) == "":
		u.errorf("-reload is required")
		u.hint(`the command that upgrades your server, such as -reload 'systemctl reload app'`)
		return exitUsage
	case modeErr != nil:
		u.errorf("%v", modeErr)
		return exitUsage
	case *upgrades < 1 || *clients < 1:
		u.errorf("-upgrades and -clients must be at least 1")
		return exitUsage
	case *slow < 0 || *settle < 0:
		u.errorf("-slow and -settle must not be negative")
		return exitUsage
	case *warmup <= 0 || *readyTimeout <= 0 || *maxPause <= 0:
		u.errorf("-warmup, -ready-timeout and -max-pause must be positive")
		return exitUsage
	}
	if err := checkVerifyURL(*rawURL, *allowRemote); err != nil {
		u.errorf("-url %s: %v", *rawURL, err)
		var remote *remoteHostError
		switch {
		case errors.As(err, &remote):
			u.hint("verify sends thousands of requests a second: if %s really is your server, add -allow-remote", remote.host)
		default:
			u.hint("want http://HOST:PORT/PATH, such as http://127.0.0.1:8080/")
		}
		return exitUsage
	}

	r := &reloader{command: *reload, pidFile: *pidFile, timeout: *readyTimeout}
	how := fmt.Sprintf("reload %q", r.command)
	if r.pidFile != "" {
		pid, err := readPIDFile(r.pidFile)
		if err != nil {
			u.errorf("-pid-file: %v", err)
			u.hint("start the server first: baton writes its PID file once it is ready")
			return exitNoStart
		}
		how += fmt.Sprintf(", then wait for %s to change (now pid %d)", r.pidFile, pid)
	} else if strings.Contains(r.command, "kill ") {
		u.hint("kill returns before the upgrade is done: add -pid-file PATH to wait for the new pid")
	}
	u.infof("verifying %s — %d upgrades, %d clients per mode (%s): %s", *rawURL, *upgrades, *clients, *mode, how)

	slowDelay := *slow
	if slowDelay == 0 {
		slowDelay = -1 // loadgen: negative is none, zero the default
	}
	var progressTTY bool
	if f, ok := u.stderr.(*os.File); ok {
		progressTTY = loadgen.IsTerminal(f)
	}
	rep, err := loadgen.Run(ctx, loadgen.Config{
		URL:       *rawURL,
		Clients:   *clients,
		Modes:     modes,
		Upgrades:  *upgrades,
		Upgrade:   r.upgrade,
		Warmup:    *warmup,
		Settle:    max(*settle, time.Nanosecond), // loadgen: zero is the default
		SlowDelay: slowDelay,
		MaxPause:  *maxPause,
		Progress:  loadgen.NewProgressBar(u.stderr, progressTTY),
	})
	switch {
	case errors.Is(err, loadgen.ErrNoResponse):
		u.errorf("%v", err)
		u.hint("baton verify does not start your server: is it running and serving %s?", *rawURL)
		return exitNoStart
	case err != nil:
		u.errorf("%v", err)
		return exitUsage
	}
	if *asJSON {
		enc := json.NewEncoder(u.stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		rep.WriteText(u.stdout)
	}
	verifyHints(u, rep)
	switch {
	case rep.Failed():
		return exitFailed
	case rep.Stopped != "":
		// Nothing failed, but not every upgrade was tried: not a proof.
		return exitFailed
	}
	return exitOK
}

// verifyHints points at the likely cause of what the report shows.
func verifyHints(u ui, rep *loadgen.Report) {
	var refused int64
	for _, m := range rep.Modes {
		refused += m.Failures.Refused
	}
	if refused > 0 {
		u.hint("refused means that for a moment nobody listened: does the upgrade close and re-bind the socket instead of handing it over?")
	}
	// Only a server that writes pid=<n> in its bodies says who served.
	if done := rep.Upgrades.OK; len(rep.PIDs) > 0 && len(rep.PIDs) <= done {
		u.hint("responses named %d serving pid(s) across %d upgrades: did every upgrade replace the process?", len(rep.PIDs), done)
	}
}

// remoteHostError is a -url whose host is not loopback, without
// -allow-remote.
type remoteHostError struct{ host string }

func (e *remoteHostError) Error() string {
	return fmt.Sprintf("%q is not a loopback host", e.host)
}

// checkVerifyURL checks what loadgen would refuse, with the flag's words,
// and that the host is loopback — an IP literal or "localhost" — unless
// remote hosts are allowed: a load generator pointed at someone else's host
// by a typo is a denial of service.
func checkVerifyURL(raw string, allowRemote bool) error {
	u, err := url.Parse(raw)
	if err != nil {
		return err
	}
	if u.Scheme != "http" {
		return fmt.Errorf("scheme %q is not supported: only http://", u.Scheme)
	}
	host := u.Hostname()
	if host == "" {
		return errors.New("no host")
	}
	if allowRemote || strings.EqualFold(host, "localhost") {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return &remoteHostError{host: host}
}

// reloader performs one upgrade the way the user asked: the reload command,
// then, with a PID file, the wait for a new pid in it.
type reloader struct {
	command string
	pidFile string // "": the command's exit is the end of the upgrade
	timeout time.Duration
}

// upgrade is loadgen's Config.Upgrade.
func (r *reloader) upgrade(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	var old int
	if r.pidFile != "" {
		var err error
		if old, err = readPIDFile(r.pidFile); err != nil {
			return fmt.Errorf("before the reload command: %w", err)
		}
	}
	if err := r.run(ctx); err != nil {
		return err
	}
	if r.pidFile == "" {
		return nil
	}
	return r.waitNewPID(ctx, old)
}

// run runs the reload command and returns an error carrying the end of its
// output if it fails or outlives the timeout.
func (r *reloader) run(ctx context.Context) error {
	var out outputTail
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", r.command)
	cmd.Stdout, cmd.Stderr = &out, &out
	// A command that started a daemon, or was killed at the timeout, may
	// leave a child holding the output pipe: do not wait for it.
	cmd.WaitDelay = outputWaitDelay
	err := cmd.Run()
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
		// ErrWaitDelay: it exited 0, something it started kept the pipe.
		return nil
	case ctx.Err() == context.DeadlineExceeded:
		return fmt.Errorf("reload command still running after -ready-timeout %v; killed%s", r.timeout, out.summary())
	}
	return fmt.Errorf("reload command: %w%s", err, out.summary())
}

// waitNewPID waits until the PID file names a pid other than old. baton
// rewrites it (atomically) only once the successor is ready, so a new pid
// there is the end of the upgrade; an upgrade that failed leaves the old pid.
func (r *reloader) waitNewPID(ctx context.Context, old int) error {
	tick := time.NewTicker(pidFilePoll)
	defer tick.Stop()
	for {
		pid, err := readPIDFile(r.pidFile)
		if err == nil && pid != old {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("waiting for a new pid: %w", err)
			}
			return fmt.Errorf("%s still names pid %d after -ready-timeout %v: the upgrade failed, or is slower than that", r.pidFile, old, r.timeout)
		case <-tick.C:
		}
	}
}

func readPIDFile(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	pid, err := parsePIDFile(b)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return pid, nil
}

// parsePIDFile reads a PID file's contents: a positive decimal pid that
// fits a pid_t, and surrounding white space.
func parsePIDFile(b []byte) (int, error) {
	s := strings.TrimSpace(string(b))
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 || pid > math.MaxInt32 {
		return 0, fmt.Errorf("%q is not a pid", s)
	}
	return pid, nil
}

// outputTail keeps the last reloadOutputMax bytes written to it: whatever a
// reload command prints, the report gets its end, bounded.
type outputTail struct {
	b         []byte
	truncated bool
}

func (t *outputTail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if n := len(t.b) - reloadOutputMax; n > 0 {
		t.b = append(t.b[:0], t.b[n:]...)
		t.truncated = true
	}
	return len(p), nil
}

// summary is the output on one line, for the report's list of errors:
// ": line 1 | line 2", or "" if there was none.
func (t *outputTail) summary() string {
	var lines []string
	for l := range strings.Lines(string(t.b)) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return ""
	}
	s := strings.Join(lines, " | ")
	if t.truncated {
		s = "…" + s
	}
	return ": " + s
}

// outputWaitDelay is how long the reload command's output is read after
// it exited: what it wrote itself is in the pipe by then, and a second
// keeps a daemon it started (which holds the pipe for good) from holding
// up the upgrade.
const outputWaitDelay = time.Second
