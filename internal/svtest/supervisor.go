//go:build linux

package svtest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// EnvRequire names the environment variable that turns a missing
// supervisor from a skipped test into a failed one; "make test" sets it
// to 1, so that CI cannot pass without having run these tests.
const EnvRequire = "BATON_REQUIRE_INTEGRATION"

const (
	// commandTimeout bounds one control command. "sv restart" and
	// "sv stop" wait up to 7 seconds themselves for the service to
	// change state.
	commandTimeout = 10 * time.Second

	// exitTimeout is how long teardown waits for a supervisor to exit
	// once told to bring its service down and exit: the server's drain
	// (tests pass -drain 5s) plus a supervisor's one-second restart
	// pause, with room to spare.
	exitTimeout = 15 * time.Second

	// leftoverGrace is how long a process of the service may outlive its
	// supervisor before teardown calls it a leak and kills it.
	leftoverGrace = 2 * time.Second

	// pollEvery is the pace of every wait on a status file or a port.
	pollEvery = 10 * time.Millisecond
)

// Require fails the test if k's programs are not on PATH and EnvRequire
// is 1, and skips it, saying why, otherwise.
func Require(t testing.TB, k Kind) {
	t.Helper()
	if len(k.Programs()) == 0 {
		t.Fatalf("svtest: unknown supervisor kind %q", k)
	}
	var missing []string
	for _, p := range k.Programs() {
		if _, err := exec.LookPath(p); err != nil {
			missing = append(missing, p)
		}
	}
	if len(missing) == 0 {
		return
	}
	msg := fmt.Sprintf("%s tests need %s on PATH; missing: %s (Debian: apt-get install %s)",
		k, strings.Join(k.Programs(), ", "), strings.Join(missing, ", "), k)
	if os.Getenv(EnvRequire) == "1" {
		t.Fatalf("%s; %s=1 forbids skipping", msg, EnvRequire)
	}
	t.Skipf("skipping: %s; set %s=1 to make this a failure", msg, EnvRequire)
}

// commands are a Kind's control commands; the service directory is
// appended to each.
type commands struct {
	restart, term, hangup, stop, exit []string
}

func (k Kind) commands() commands {
	switch k {
	case Daemontools:
		return commands{
			restart: []string{"svc", "-t"}, // SIGTERM; supervise starts ./run again
			term:    []string{"svc", "-t"},
			hangup:  []string{"svc", "-h"},
			stop:    []string{"svc", "-d"}, // want down, SIGTERM and SIGCONT
			exit:    []string{"svc", "-dx"},
		}
	case Runit:
		return commands{
			// term, cont, up; then waits up to 7s for the new process.
			restart: []string{"sv", "restart"},
			term:    []string{"sv", "term"}, // SIGTERM and no wait
			hangup:  []string{"sv", "hup"},
			stop:    []string{"sv", "stop"}, // down; waits up to 7s for it
			exit:    []string{"sv", "exit"}, // down, and runsv exits after
		}
	case S6:
		return commands{
			restart: []string{"s6-svc", "-r"}, // SIGTERM, want stays up
			term:    []string{"s6-svc", "-t"},
			hangup:  []string{"s6-svc", "-h"},
			stop:    []string{"s6-svc", "-d"},
			exit:    []string{"s6-svc", "-dx"},
		}
	}
	return commands{}
}

// A Supervisor is a supervisor process of one Kind running a Service, as
// a child of the test.
type Supervisor struct {
	Kind    Kind
	Service *Service
	Output  string // the supervisor's own stdout and stderr

	t       testing.TB
	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd.Wait has returned
	waitErr error         // cmd.Wait's error, once exited is closed
	killed  bool          // Kill was called: its exit is no failure
}

// Start runs the supervisor of kind k (supervise, runsv or s6-supervise)
// on svc's service directory, whose run script must be written. When the
// test ends the supervisor is told to bring the service down and exit,
// and anything of the service still running after that is a test failure,
// and killed. Start skips or fails the test, as Require says, if k's
// programs are missing.
func Start(t testing.TB, k Kind, svc *Service) *Supervisor {
	t.Helper()
	Require(t, k)
	if _, err := os.Stat(filepath.Join(svc.Dir, "run")); err != nil {
		t.Fatalf("svtest.Start(%s): no run script: %v; call WriteRun first", k, err)
	}
	s := &Supervisor{
		Kind:    k,
		Service: svc,
		Output:  filepath.Join(svc.Root, "supervisor.out"),
		t:       t,
		exited:  make(chan struct{}),
	}
	// A file, not a pipe: the supervisor's children inherit its output
	// and may outlive it, and a pipe would hold up cmd.Wait.
	out, err := os.OpenFile(s.Output, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	s.cmd = exec.Command(k.Programs()[0], svc.Dir)
	s.cmd.Stdout, s.cmd.Stderr = out, out
	// Should the test binary die without running its cleanups (a panic,
	// go test -timeout), runsv and s6-supervise take SIGTERM as "bring
	// the service down and exit". daemontools' supervise just dies and
	// leaves the service running: only teardown stops that one.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("svtest.Start(%s): %v", k, err)
	}
	go func() {
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(s.teardown)
	return s
}

// Restart asks the supervisor to restart the service while it keeps
// wanting it up: svc -t, sv restart or s6-svc -r.
func (s *Supervisor) Restart(ctx context.Context) error {
	return s.run(ctx, s.Kind.commands().restart)
}

// Term sends the service SIGTERM through its supervisor and returns at
// once, without waiting for anything (svc -t, sv term, s6-svc -t): for a
// service wanted up, a restart whose outcome the caller watches itself.
func (s *Supervisor) Term(ctx context.Context) error {
	return s.run(ctx, s.Kind.commands().term)
}

// PID is the supervisor's own pid.
func (s *Supervisor) PID() int { return s.cmd.Process.Pid }

// Kill kills the supervisor with SIGKILL and waits until it is reaped,
// leaving its service behind: the test of what a service does when its
// supervisor is gone. Teardown then expects the supervisor gone.
func (s *Supervisor) Kill() {
	s.killed = true
	s.cmd.Process.Kill()
	<-s.exited
}

// Hangup sends the service SIGHUP through its supervisor: svc -h, sv hup
// or s6-svc -h.
func (s *Supervisor) Hangup(ctx context.Context) error {
	return s.run(ctx, s.Kind.commands().hangup)
}

// Stop asks the supervisor to bring the service down and keep it down:
// svc -d, sv stop or s6-svc -d.
func (s *Supervisor) Stop(ctx context.Context) error {
	return s.run(ctx, s.Kind.commands().stop)
}

func (s *Supervisor) run(ctx context.Context, command []string) error {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	argv := append(command[:len(command):len(command)], s.Service.Dir)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w; output: %q", strings.Join(argv, " "), err, out)
	}
	return nil
}

// Status reads the supervisor's view of the service from its status file.
func (s *Supervisor) Status() (Status, error) {
	b, err := os.ReadFile(filepath.Join(s.Service.Dir, "supervise", "status"))
	if err != nil {
		return Status{}, err
	}
	return ParseStatus(s.Kind, b)
}

// WaitStatus polls Status until ok accepts it, and returns it. It fails
// when ctx is done or the supervisor has exited; what names the wait in
// the error.
func (s *Supervisor) WaitStatus(ctx context.Context, what string, ok func(Status) bool) (Status, error) {
	for {
		st, err := s.Status()
		if err == nil && ok(st) {
			return st, nil
		}
		last := st.String()
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return st, fmt.Errorf("%s: waiting for %s: %w; the status file said: %s", s.Kind, what, context.Cause(ctx), last)
		case <-s.exited:
			return st, fmt.Errorf("%s: waiting for %s: the supervisor exited (%v); the status file said: %s", s.Kind, what, s.waitErr, last)
		case <-time.After(pollEvery):
		}
	}
}

// WaitServing waits until the supervisor tracks a process other than old
// (0: any) with the service up and wanted up, the pid file names that
// process, and it answers HTTP; and returns its pid. The last two may lag
// the first: a generation that is handing over can still accept for a
// moment.
func (s *Supervisor) WaitServing(ctx context.Context, old int) (int, error) {
	var last string
	for {
		st, err := s.Status()
		switch {
		case err != nil:
			last = "status file: " + err.Error()
		case !st.Up || !st.WantUp || st.PID == old:
			last = "supervisor: " + st.String()
		default:
			filePID, ferr := s.Service.PIDFromFile()
			probe, cancel := context.WithTimeout(ctx, probeTimeout)
			httpPID, herr := s.Service.ServingPID(probe)
			cancel()
			if ferr == nil && herr == nil && filePID == st.PID && httpPID == st.PID {
				return st.PID, nil
			}
			last = fmt.Sprintf("supervisor: %v; pid file: %s; HTTP: %s", st, pidOrErr(filePID, ferr), pidOrErr(httpPID, herr))
		}
		want := "a process serving"
		if old != 0 {
			want = fmt.Sprintf("a process other than pid %d serving", old)
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("%s: waiting for %s: %w; last seen: %s", s.Kind, want, context.Cause(ctx), last)
		case <-s.exited:
			return 0, fmt.Errorf("%s: waiting for %s: the supervisor exited (%v); last seen: %s", s.Kind, want, s.waitErr, last)
		case <-time.After(pollEvery):
		}
	}
}

func pidOrErr(pid int, err error) string {
	if err != nil {
		return err.Error()
	}
	return fmt.Sprintf("pid %d", pid)
}

// teardown brings the service down, makes the supervisor exit, and fails
// the test for anything of the service left running, which it kills.
func (s *Supervisor) teardown() {
	t := s.t
	// The names of the service's processes, to reap them should they be
	// orphaned here once dead: a zombie has no cwd or command line left
	// to recognise it by.
	comms := map[string]bool{"exe": true} // a copy started from /proc/self/exe
	if len(s.Service.argv) > 0 {
		comms[commOf(s.Service.argv[0])] = true
	}
	for _, p := range processesUnder(s.Service.Root) {
		comms[p.Comm] = true
	}
	delete(comms, commOf(s.Kind.Programs()[0])) // os/exec waits for it

	select {
	case <-s.exited:
		if !s.killed {
			t.Errorf("%s exited before the end of the test: %v", s.Kind, s.waitErr)
		}
	default:
		if err := s.run(context.Background(), s.Kind.commands().exit); err != nil {
			t.Errorf("telling %s to stop the service and exit: %v", s.Kind, err)
		}
		select {
		case <-s.exited:
		case <-time.After(exitTimeout):
			t.Errorf("%s (pid %d) still running %v after being told to stop the service and exit; killing it", s.Kind, s.cmd.Process.Pid, exitTimeout)
			s.cmd.Process.Kill()
			<-s.exited
		}
	}

	deadline := time.Now().Add(leftoverGrace)
	for {
		reapAdopted(comms)
		left := processesUnder(s.Service.Root)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, p := range left {
				fmt.Fprintf(&b, "\n\t%v", p)
			}
			t.Errorf("processes of the service still running %v after %s exited; killing them:%s", leftoverGrace, s.Kind, b.String())
			if err := killAndReap(left, 5*time.Second); err != nil {
				t.Error(err)
			}
			reapAdopted(comms)
			break
		}
		time.Sleep(pollEvery)
	}

	if t.Failed() {
		t.Logf("%s output (%s):\n%s", s.Kind, s.Output, tail(s.Output, 16<<10))
		t.Logf("server output (%s):\n%s", s.Service.Output, tail(s.Service.Output, 64<<10))
	}
}

// commOf is the kernel's name for a process running path: the base name,
// cut to TASK_COMM_LEN-1 bytes.
func commOf(path string) string {
	c := filepath.Base(path)
	if len(c) > 15 {
		c = c[:15]
	}
	return c
}
