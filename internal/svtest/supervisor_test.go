//go:build linux

package svtest

import (
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// toolView is what a Kind's own status tool says: up or not, and the pid.
func toolView(t *testing.T, k Kind, dir string) (up bool, pid int, said string) {
	t.Helper()
	var argv []string
	switch k {
	case Daemontools:
		argv = []string{"svstat", dir} // "DIR: up (pid 123) 5 seconds"
	case Runit:
		argv = []string{"sv", "status", dir} // "run: DIR: (pid 123) 5s"
	case S6:
		argv = []string{"s6-svstat", dir} // "up (pid 123) 5 seconds"
	}
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	said = strings.TrimSpace(string(out))
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(argv, " "), err, said)
	}
	up = strings.HasPrefix(said, "run: ") || strings.Contains(said, "up (pid ")
	if m := regexp.MustCompile(`\(pid (\d+)\)`).FindStringSubmatch(said); m != nil {
		pid, _ = strconv.Atoi(m[1])
	}
	return up, pid, said
}

// checkAgainstTool fails the test unless Status and the Kind's own tool
// agree on up and pid.
func checkAgainstTool(t *testing.T, sup *Supervisor) {
	t.Helper()
	st, err := sup.Status()
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	up, pid, said := toolView(t, sup.Kind, sup.Service.Dir)
	if st.Up != up || st.PID != pid {
		t.Errorf("Status() = %v; the %s tool says %q", st, sup.Kind, said)
	}
}

// A service that is a plain sleep: each kind starts it, restarts it and
// stops it, and Status agrees with the kind's own tool at every step.
func TestSupervisorLifecycle(t *testing.T) {
	for _, k := range Kinds() {
		t.Run(string(k), func(t *testing.T) {
			svc := NewService(t)
			if err := svc.WriteRun("sleep", "1000"); err != nil {
				t.Fatal(err)
			}
			sup := Start(t, k, svc)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()

			st, err := sup.WaitStatus(ctx, "up", func(s Status) bool { return s.Up && s.WantUp })
			if err != nil {
				t.Fatal(err)
			}
			// The status names the pid right after the fork; the process
			// is the supervisor, then sh, until ./run execs sleep.
			for p, _ := readProcess(st.PID); p.Comm != "sleep" || p.Cwd != svc.Dir; p, _ = readProcess(st.PID) {
				select {
				case <-ctx.Done():
					t.Fatalf("%s tracks pid %d: %+v; want sleep 1000 working in %s", k, st.PID, p, svc.Dir)
				case <-time.After(pollEvery):
				}
			}
			checkAgainstTool(t, sup)

			first := st.PID
			if err := sup.Restart(ctx); err != nil {
				t.Fatal(err)
			}
			st, err = sup.WaitStatus(ctx, "a new pid", func(s Status) bool { return s.Up && s.WantUp && s.PID != first })
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstTool(t, sup)
			if p, ok := readProcess(first); ok && !p.Zombie() {
				t.Errorf("after Restart, the first process still runs: %v", p)
			}

			if err := sup.Stop(ctx); err != nil {
				t.Fatal(err)
			}
			if _, err := sup.WaitStatus(ctx, "down", func(s Status) bool { return !s.Up && !s.WantUp }); err != nil {
				t.Fatal(err)
			}
			checkAgainstTool(t, sup)
			if p, ok := readProcess(st.PID); ok && !p.Zombie() {
				t.Errorf("after Stop, the service still runs: %v", p)
			}
		})
	}
}

// recorder is a testing.TB whose Error and Errorf are recorded rather than
// failing the test: it lets a test check what teardown reports.
type recorder struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recorder) Errorf(format string, args ...any) { r.Error(fmt.Sprintf(format, args...)) }

func (r *recorder) Error(args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprint(args...))
}

// A process the service leaves behind when it stops is found, reported
// and killed by teardown.
func TestTeardownKillsLeftovers(t *testing.T) {
	rec := &recorder{}
	var stray Process
	t.Run("leak", func(t *testing.T) {
		rec.TB = t
		svc := NewService(t)
		// The background sleep is orphaned when the service stops, and
		// keeps working in the service directory.
		if err := svc.WriteRun("/bin/sh", "-c", "sleep 1000 & exec sleep 1001"); err != nil {
			t.Fatal(err)
		}
		sup := Start(rec, Daemontools, svc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if _, err := sup.WaitStatus(ctx, "up", func(s Status) bool { return s.Up }); err != nil {
			t.Fatal(err)
		}
		for stray.PID == 0 {
			for _, p := range processesUnder(svc.Root) {
				if p.Cmdline == "sleep 1000" {
					stray = p
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the service's background sleep never showed up: %v", processesUnder(svc.Root))
			case <-time.After(pollEvery):
			}
		}
	})
	if stray.PID == 0 {
		return // the subtest failed or was skipped, and said why
	}
	if len(rec.errs) != 1 || !strings.Contains(rec.errs[0], fmt.Sprintf("pid %d ", stray.PID)) {
		t.Errorf("teardown reported %q; want one error naming the stray pid %d", rec.errs, stray.PID)
	}
	if p, ok := readProcess(stray.PID); ok {
		t.Errorf("after teardown the stray process is still there: %v", p)
	}
}

func TestWriteRunQuotes(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/tmp/a b", `'/tmp/a b'`},
		{"it's", `'it'\''s'`},
		{"$HOME;`x`", "'$HOME;`x`'"},
	}
	for _, tt := range tests {
		if got := shellQuote(tt.in); got != tt.want {
			t.Errorf("shellQuote(%q) = %s; want %s", tt.in, got, tt.want)
		}
		out, err := exec.Command("/bin/sh", "-c", "printf %s "+shellQuote(tt.in)).Output()
		if err != nil || string(out) != tt.in {
			t.Errorf("sh printed %q, %v for %s; want %q", out, err, shellQuote(tt.in), tt.in)
		}
	}
}
