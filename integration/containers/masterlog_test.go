//go:build linux

package containers

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// masterLog follows what "baton run" and its workers write (the master's
// slog lines, key=value) as it comes, so that a test waits for an event —
// a generation ready, a generation exited — when it happens, instead of
// asking the master again and again. Lines that are not key=value (the
// CLI's "baton: …" lines) are kept for the record and match nothing.
type masterLog struct {
	mu      sync.Mutex
	lines   []string
	events  []logEvent
	changed chan struct{} // closed, and replaced, at every line and at EOF
	eof     bool
}

// logEvent is one key=value line.
type logEvent map[string]string

func (e logEvent) msg() string { return e["msg"] }

// int returns the integer value of key, or -1.
func (e logEvent) int(key string) int {
	n, err := strconv.Atoi(e[key])
	if err != nil {
		return -1
	}
	return n
}

// master reports whether the master, not a worker, wrote the line.
func (e logEvent) master() bool { return e["baton"] == "master" }

// followLog reads r until EOF in a goroutine of its own.
func followLog(r io.Reader) *masterLog {
	l := &masterLog{changed: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			l.add(sc.Text())
		}
		l.mu.Lock()
		l.eof = true
		close(l.changed)
		l.changed = make(chan struct{})
		l.mu.Unlock()
	}()
	return l
}

func (l *masterLog) add(line string) {
	ev, ok := parseLogLine(line)
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
	if ok {
		l.events = append(l.events, ev)
	}
	close(l.changed)
	l.changed = make(chan struct{})
}

// text is everything read so far.
func (l *masterLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// all returns the events that match.
func (l *masterLog) all(match func(logEvent) bool) []logEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []logEvent
	for _, e := range l.events {
		if match(e) {
			out = append(out, e)
		}
	}
	return out
}

// wait returns the first event, seen or to come, that matches; it fails
// when ctx is done or the log ends without one.
func (l *masterLog) wait(ctx context.Context, what string, match func(logEvent) bool) (logEvent, error) {
	for {
		l.mu.Lock()
		for _, e := range l.events {
			if match(e) {
				l.mu.Unlock()
				return e, nil
			}
		}
		changed, eof := l.changed, l.eof
		l.mu.Unlock()
		if eof {
			return nil, fmt.Errorf("waiting for %s: the log ended (the master exited)", what)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		}
	}
}

// hasEnded reports whether the log has ended.
func (l *masterLog) hasEnded() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.eof
}

// ended waits until the log has ended: the master and every process
// that shared its output have exited.
func (l *masterLog) ended(ctx context.Context) error {
	for {
		l.mu.Lock()
		changed, eof := l.changed, l.eof
		l.mu.Unlock()
		if eof {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the end of the log: %w", ctx.Err())
		}
	}
}

// Matchers of the master's events (supervisor's log lines).

func generationReady(gen int) func(logEvent) bool {
	return func(e logEvent) bool {
		return e.master() && e.msg() == "generation ready" && e.int("generation") == gen
	}
}

func generationStarted(e logEvent) bool {
	return e.master() && e.msg() == "started a generation"
}

func generationExited(gen int) func(logEvent) bool {
	return func(e logEvent) bool {
		return e.master() && e.msg() == "generation exited" && e.int("generation") == gen
	}
}

// parseLogLine reads a line of log/slog's TextHandler: key=value pairs
// separated by spaces, a value quoted (strconv.Quote) when it needs to
// be. It fails on anything else, and on a line without msg.
func parseLogLine(line string) (logEvent, bool) {
	ev := logEvent{}
	s := line
	for {
		s = strings.TrimLeft(s, " ")
		if s == "" {
			break
		}
		eq := strings.IndexByte(s, '=')
		if eq <= 0 || strings.ContainsAny(s[:eq], " \"") {
			return nil, false
		}
		key := s[:eq]
		s = s[eq+1:]
		var val string
		if strings.HasPrefix(s, `"`) {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, false
			}
			val, _ = strconv.Unquote(q)
			s = s[len(q):]
		} else {
			end := strings.IndexByte(s, ' ')
			if end < 0 {
				end = len(s)
			}
			val, s = s[:end], s[end:]
		}
		ev[key] = val
	}
	if _, ok := ev["msg"]; !ok {
		return nil, false
	}
	return ev, true
}

func TestParseLogLine(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		line string
		want logEvent // nil: not a log line
	}{
		{`time=2026-12-05T01:18:29.387Z level=INFO msg="generation ready" baton=master generation=2 pid=34 after=6ms`,
			logEvent{"time": "2026-12-05T01:18:29.387Z", "level": "INFO", "msg": "generation ready", "baton": "master", "generation": "2", "pid": "34", "after": "6ms"}},
		{`level=INFO msg="generation exited" status="exit status 0"`, logEvent{"level": "INFO", "msg": "generation exited", "status": "exit status 0"}},
		{`msg="a \"quoted\" word" k=`, logEvent{"msg": `a "quoted" word`, "k": ""}},
		{`baton: error: supervisor: generation 1 (pid 13): exited`, nil},
		{`level=INFO k=v`, nil}, // no msg
		{`msg="unterminated`, nil},
		{``, nil},
	} {
		got, ok := parseLogLine(tc.line)
		if ok != (tc.want != nil) || len(got) != len(tc.want) {
			t.Errorf("parseLogLine(%q) = %v, %v; want %v", tc.line, got, ok, tc.want)
			continue
		}
		for k, v := range tc.want {
			if got[k] != v {
				t.Errorf("parseLogLine(%q)[%q] = %q; want %q", tc.line, k, got[k], v)
			}
		}
	}
}
