package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/httpdrain"
)

// The flags are an interface: scripts, units and tests use them.
func TestFlags(t *testing.T) {
	t.Parallel()
	cfg, status := parseFlags("httpserver", nil, io.Discard)
	want := Config{
		Listen:         "127.0.0.1:8080",
		Drain:          30 * time.Second,
		UpgradeTimeout: baton.DefaultUpgradeTimeout,
		IdleGrace:      httpdrain.DefaultIdleGrace,
	}
	if status != -1 || cfg != want {
		t.Errorf("parseFlags() = %+v, %d; want the defaults %+v, -1", cfg, status, want)
	}

	args := []string{"-listen", "127.0.0.1:9", "-pid-file", "p", "-drain", "1s", "-upgrade-timeout", "2s",
		"-control", "c", "-fd-store", "-idle-grace", "3s", "-tls-cert", "cert.pem", "-tls-key", "key.pem", "-probation", "4s",
		"-max-draining", "4", "-close-pace", "50ms"}
	cfg, status = parseFlags("httpserver", args, io.Discard)
	want = Config{Listen: "127.0.0.1:9", PIDFile: "p", Drain: time.Second, UpgradeTimeout: 2 * time.Second,
		Control: "c", FDStore: true, IdleGrace: 3 * time.Second, TLSCert: "cert.pem", TLSKey: "key.pem", Probation: 4 * time.Second,
		MaxDraining: 4, ClosePace: 50 * time.Millisecond}
	if status != -1 || cfg != want {
		t.Errorf("parseFlags(%q) = %+v, %d; want %+v, -1", args, cfg, status, want)
	}

	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"-h"}, 0},
		{[]string{"-bogus"}, 2},
		{[]string{"extra"}, 2},
		{[]string{"-drain", "soon"}, 2},
		{[]string{"-tls-cert", "cert.pem"}, 2},
		{[]string{"-tls-key", "key.pem"}, 2},
		{[]string{"-probation", "-1s"}, 2},
		{[]string{"-max-draining", "-1"}, 2},
		{[]string{"-close-pace", "-1s"}, 2},
	} {
		var out strings.Builder
		if got := Main("httpserver", tc.args, &out); got != tc.want {
			t.Errorf("Main(%q) = %d; want %d. Output:\n%s", tc.args, got, tc.want, &out)
		}
		if !strings.Contains(out.String(), "Usage: httpserver") {
			t.Errorf("Main(%q) printed no usage:\n%s", tc.args, &out)
		}
	}
}

func TestHandler(t *testing.T) {
	t.Parallel()
	st := baton.Status{Generations: []baton.GenerationStatus{{Generation: 7, PID: os.Getpid(), State: baton.GenServing}}, Upgrades: baton.UpgradeStats{OK: 6, Failed: 1}}
	srv := httptest.NewServer(Handler(7, func() baton.Status { return st }))
	defer srv.Close()
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/", 200, fmt.Sprintf("pid=%d gen=7\n", os.Getpid())},
		{"/?delay=20ms", 200, fmt.Sprintf("pid=%d gen=7\n", os.Getpid())},
		{"/?delay=soon", 400, ""},
		{"/?delay=-1s", 400, ""},
		{"/?delay=2m", 400, ""},
		{"/other", 404, ""},
		{"/status", 200, ""},
	} {
		resp, err := http.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status || (tc.body != "" && string(b) != tc.body) {
			t.Errorf("GET %s = %d %q; want %d %q", tc.path, resp.StatusCode, b, tc.status, tc.body)
		}
		if tc.path == "/status" {
			var got baton.Status
			if err := json.Unmarshal(b, &got); err != nil || len(got.Generations) != 1 || got.Generations[0].Generation != 7 || got.Upgrades != st.Upgrades {
				t.Errorf("GET /status = %s (%v); want %+v", b, err, st)
			}
		}
	}
}

// GET /stream ticks until the drain asks it to end, then ends with a
// complete body: the client reads every line and a clean EOF.
func TestStreamEndsWhenTheDrainAsks(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := httpdrain.New(&http.Server{Handler: Handler(3, nil)}, httpdrain.Options{})
	go hs.Serve(ln)
	resp, err := http.Get("http://" + ln.Addr().String() + "/stream")
	if err != nil {
		t.Fatalf("GET /stream: %v", err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	prefix := fmt.Sprintf("tick pid=%d n=0\n", os.Getpid())
	if line, err := br.ReadString('\n'); line != prefix {
		t.Fatalf("first line %q, %v; want %q", line, err, prefix)
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- hs.Drain(ctx)
	}()
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading the stream to its end: %v; want a complete body", err)
	}
	lines := strings.Split(strings.TrimSuffix(string(rest), "\n"), "\n")
	if last := lines[len(lines)-1]; !strings.HasPrefix(last, fmt.Sprintf("end pid=%d n=", os.Getpid())) {
		t.Errorf("last line %q; want the end line", last)
	}
	if err := <-drained; err != nil {
		t.Errorf("Drain = %v, want nil", err)
	}
}
