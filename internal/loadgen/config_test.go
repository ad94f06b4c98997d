package loadgen

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	up := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name string
		c    Config
		want string
	}{
		{"no URL", Config{Upgrade: up}, "loadgen: Config.URL is empty"},
		{"https", Config{URL: "https://127.0.0.1:8443/", Upgrade: up}, `scheme "https" is not supported; want http://`},
		{"ftp", Config{URL: "ftp://127.0.0.1/", Upgrade: up}, `scheme "ftp" is not supported`},
		{"no scheme", Config{URL: "127.0.0.1:8080", Upgrade: up}, "loadgen: bad Config.URL"},
		{"host only", Config{URL: "localhost", Upgrade: up}, `scheme "" is not supported`},
		{"no host", Config{URL: "http:///path", Upgrade: up}, "has no host"},
		{"opaque", Config{URL: "http:foo", Upgrade: up}, "has no host"},
		{"bad URL", Config{URL: "http://[::1", Upgrade: up}, "loadgen: bad Config.URL"},
		{"no Upgrade", Config{URL: "http://127.0.0.1/"}, "Config.Upgrade is nil"},
		{"bad mode", Config{URL: "http://127.0.0.1/", Upgrade: up, Modes: []Mode{"pipelined"}}, `unknown mode "pipelined"`},
		{"mode twice", Config{URL: "http://127.0.0.1/", Upgrade: up, Modes: []Mode{Fresh, KeepAlive, Fresh}}, `mode "fresh" twice`},
		{"negative Clients", Config{URL: "http://127.0.0.1/", Upgrade: up, Clients: -1}, "Config.Clients is negative"},
		{"negative Upgrades", Config{URL: "http://127.0.0.1/", Upgrade: up, Upgrades: -1}, "Config.Upgrades is negative"},
		{"negative Warmup", Config{URL: "http://127.0.0.1/", Upgrade: up, Warmup: -time.Second}, "Config.Warmup is negative"},
		{"negative Settle", Config{URL: "http://127.0.0.1/", Upgrade: up, Settle: -time.Second}, "Config.Settle is negative"},
		{"negative RequestTimeout", Config{URL: "http://127.0.0.1/", Upgrade: up, RequestTimeout: -1}, "Config.RequestTimeout is negative"},
		{"negative MaxRequests", Config{URL: "http://127.0.0.1/", Upgrade: up, MaxRequests: -1}, "Config.MaxRequests is negative"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rep, err := runFor(t, time.Second, t.Context(), tc.c)
			if err == nil || rep != nil {
				t.Fatalf("Run(%+v) = %v, %v; want nil and an error containing %q", tc.c, rep, err, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run error = %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c := Config{URL: "http://LOCALHOST/x?y=1#frag", Upgrade: func(context.Context) error { return nil }}
	s, err := c.settings()
	if err != nil {
		t.Fatalf("settings() of a minimal Config: %v", err)
	}
	if s.clients != DefaultClients || s.upgrades != DefaultUpgrades || s.warmup != DefaultWarmup ||
		s.settle != DefaultSettle || s.slowDelay != DefaultSlowDelay || s.requestTimeout != DefaultRequestTimeout ||
		s.maxRequests != DefaultMaxRequests || len(s.modes) != 2 {
		t.Errorf("settings() = %+v, want every default", s)
	}
	want := target{addr: "LOCALHOST:80", host: "LOCALHOST", uri: "/x?y=1"}
	if s.target != want {
		t.Errorf("target = %+v, want %+v", s.target, want)
	}
	if s.slow.uri != "/x?y=1&delay=1s" {
		t.Errorf("slow target URI = %q, want %q", s.slow.uri, "/x?y=1&delay=1s")
	}
}

func TestWithDelay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url   string
		delay time.Duration
		want  string
	}{
		{"http://h/", time.Second, "http://h/?delay=1s"},
		{"http://h", time.Second, "http://h?delay=1s"},
		{"http://h:8080/x", 1500 * time.Millisecond, "http://h:8080/x?delay=1.5s"},
		{"http://h/x?a=b", 250 * time.Millisecond, "http://h/x?a=b&delay=250ms"},
		{"http://h/x?b=2&a=1", time.Second, "http://h/x?b=2&a=1&delay=1s"},     // order kept
		{"http://h/x?q=a%20b+c", time.Second, "http://h/x?q=a%20b+c&delay=1s"}, // encoding kept
		{"http://h/x?", time.Second, "http://h/x?delay=1s"},                    // empty query
		{"http://h/x?a=1#top", time.Second, "http://h/x?a=1&delay=1s"},         // fragment dropped
		{"http://h/x", 3 * time.Microsecond, "http://h/x?delay=3%C2%B5s"},      // µ escaped
		{"http://h/x", 2*time.Minute + 3*time.Second, "http://h/x?delay=2m3s"},
	} {
		u, err := url.Parse(tc.url)
		if err != nil {
			t.Fatalf("url.Parse(%q): %v", tc.url, err)
		}
		got := withDelay(u, tc.delay).String()
		if got != tc.want {
			t.Errorf("withDelay(%q, %v) = %q, want %q", tc.url, tc.delay, got, tc.want)
		}
		if u.String() != strings.TrimSuffix(tc.url, "#top") && u.Fragment == "" {
			t.Errorf("withDelay changed its argument to %q", u)
		}
		back, err := url.Parse(got)
		if err != nil || back.Query().Get("delay") != tc.delay.String() {
			t.Errorf("withDelay(%q, %v) = %q: delay parses back as %q, %v", tc.url, tc.delay, got, back.Query().Get("delay"), err)
		}
	}
}
