package loadgen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// Defaults for Config fields left at their zero value.
const (
	DefaultClients        = 16
	DefaultUpgrades       = 10
	DefaultWarmup         = time.Second
	DefaultSettle         = 300 * time.Millisecond
	DefaultSlowDelay      = time.Second
	DefaultRequestTimeout = 10 * time.Second
	DefaultMaxRequests    = 1_000_000
	// DefaultMaxPause is twice httpdrain.DefaultIdleGrace (500ms): a
	// Pausing client is silent for up to that long, so some of its pauses
	// outlast a draining server's patience with idle connections.
	DefaultMaxPause = time.Second
)

// ExamplesPerClass is how many error strings a Report keeps for each failure
// class of each mode: enough to see what went wrong, not a log.
const ExamplesPerClass = 5

// A Mode is how a client uses connections.
type Mode string

const (
	// Fresh dials a new connection for every request and asks the server to
	// close it (Connection: close). It exercises the accept queue: a
	// re-bound or closed listener shows up here as refused or reset.
	Fresh Mode = "fresh"
	// KeepAlive reuses one connection until a response says it will close,
	// then dials again. It exercises the drain of idle connections: a
	// server that closes them while a request is on the wire shows up here
	// as eof or reset.
	KeepAlive Mode = "keepalive"
	// Pausing is KeepAlive as a connection pool behind a proxy uses it:
	// every request is a POST, which a client may not retry, and between
	// two requests the client is silent for a random time up to MaxPause.
	// A draining server that closes idle connections races the client's
	// next request here, and loses it unless it never closes a connection
	// a request may be on its way to (it hands it over instead).
	Pausing Mode = "pausing"
)

// Config describes one run. Only URL and Upgrade are required.
type Config struct {
	// URL is what every client requests with GET. Only http:// is
	// supported. Required.
	URL string

	// Clients is the number of concurrent clients in each mode.
	// Defaults to DefaultClients.
	Clients int

	// Modes lists the ways clients use connections; each mode runs its own
	// Clients goroutines concurrently with the others.
	// Defaults to both Fresh and KeepAlive.
	Modes []Mode

	// MaxPause bounds the random pause of Pausing clients between two
	// requests. Defaults to DefaultMaxPause.
	MaxPause time.Duration

	// Upgrades is how many times Upgrade is called.
	// Defaults to DefaultUpgrades.
	Upgrades int

	// Upgrade performs one upgrade of the server and returns when it is
	// done or has failed. Its duration is the upgrade latency in the
	// Report; an error counts as a failed upgrade. It must return soon
	// after ctx is done. Required.
	Upgrade func(ctx context.Context) error

	// Warmup is how long load runs before the first upgrade. Requests
	// started then are the steady-state latency sample, and a server that
	// gives no response at all during Warmup makes Run fail with
	// ErrNoResponse. Defaults to DefaultWarmup.
	Warmup time.Duration

	// Settle is the pause between the end of one upgrade and the start of
	// the next, and the load that keeps running after the last one.
	// Defaults to DefaultSettle.
	Settle time.Duration

	// SlowDelay is the delay asked of the one slow request started just
	// before each upgrade: GET URL with delay=<SlowDelay> added to its
	// query (for example delay=1s), which the server is expected to honour
	// by answering late. It must come back 200 with its full body however
	// the upgrade went. Negative means no slow requests, the way a
	// negative net.Dialer.KeepAlive means no probes.
	// Defaults to DefaultSlowDelay.
	SlowDelay time.Duration

	// RequestTimeout bounds each request, from dial to the last byte of
	// the body; a slow request gets SlowDelay on top.
	// Defaults to DefaultRequestTimeout.
	RequestTimeout time.Duration

	// MaxRequests is a hard bound on the number of load requests (slow
	// requests aside). When it is reached load stops, and so does the run
	// once the upgrade under way has returned.
	// Defaults to DefaultMaxRequests.
	MaxRequests int64

	// Progress, if not nil, is called after each upgrade, about every
	// 100ms, and one last time with Done set before Run returns. Calls
	// come from a single goroutine, one at a time. It should return
	// quickly: the call after an upgrade holds up the next upgrade (never
	// the load).
	Progress func(Progress)
}

// settings is a validated Config with defaults applied.
type settings struct {
	url            *url.URL
	target         target // load requests
	slow           target // slow requests; unused if slowDelay < 0
	clients        int
	modes          []Mode
	upgrades       int
	upgrade        func(context.Context) error
	warmup         time.Duration
	settle         time.Duration
	slowDelay      time.Duration
	requestTimeout time.Duration
	maxRequests    int64
	maxPause       time.Duration
	progress       func(Progress)
}

func (c *Config) settings() (settings, error) {
	s := settings{
		clients:        orDefault(c.Clients, DefaultClients),
		modes:          c.Modes,
		upgrades:       orDefault(c.Upgrades, DefaultUpgrades),
		upgrade:        c.Upgrade,
		warmup:         orDefault(c.Warmup, DefaultWarmup),
		settle:         orDefault(c.Settle, DefaultSettle),
		slowDelay:      orDefault(c.SlowDelay, DefaultSlowDelay),
		requestTimeout: orDefault(c.RequestTimeout, DefaultRequestTimeout),
		maxRequests:    orDefault(c.MaxRequests, DefaultMaxRequests),
		maxPause:       orDefault(c.MaxPause, DefaultMaxPause),
		progress:       c.Progress,
	}
	if c.URL == "" {
		return s, errors.New("loadgen: Config.URL is empty; want the server's URL, such as http://127.0.0.1:8080/")
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return s, fmt.Errorf("loadgen: bad Config.URL: %w", err)
	}
	if u.Scheme != "http" {
		return s, fmt.Errorf("loadgen: Config.URL %q: scheme %q is not supported; want http:// (loadgen speaks plain HTTP/1.1)", c.URL, u.Scheme)
	}
	if u.Hostname() == "" {
		return s, fmt.Errorf("loadgen: Config.URL %q has no host; want http://host:port/path", c.URL)
	}
	s.url = u
	s.target = newTarget(u)
	if s.slowDelay >= 0 {
		s.slow = newTarget(withDelay(u, s.slowDelay))
	}

	if c.Upgrade == nil {
		return s, errors.New("loadgen: Config.Upgrade is nil; want a func that performs one upgrade")
	}
	if len(s.modes) == 0 {
		s.modes = []Mode{Fresh, KeepAlive}
	}
	for i, m := range s.modes {
		if m != Fresh && m != KeepAlive && m != Pausing {
			return s, fmt.Errorf("loadgen: unknown mode %q in Config.Modes; want %q, %q or %q", m, Fresh, KeepAlive, Pausing)
		}
		for _, prev := range s.modes[:i] {
			if m == prev {
				return s, fmt.Errorf("loadgen: mode %q twice in Config.Modes", m)
			}
		}
	}
	for _, f := range []struct {
		name string
		neg  bool
	}{
		{"Clients", s.clients < 0},
		{"Upgrades", s.upgrades < 0},
		{"Warmup", s.warmup < 0},
		{"Settle", s.settle < 0},
		{"RequestTimeout", s.requestTimeout < 0},
		{"MaxRequests", s.maxRequests < 0},
		{"MaxPause", s.maxPause < 0},
	} {
		if f.neg {
			return s, fmt.Errorf("loadgen: Config.%s is negative", f.name)
		}
	}
	return s, nil
}

func orDefault[T int | int64 | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// withDelay returns a copy of u whose query asks for delay d. The existing
// query is kept byte for byte (re-encoding it could change what the server
// sees) and delay is appended; the fragment, never sent, is dropped.
func withDelay(u *url.URL, d time.Duration) *url.URL {
	v := *u
	v.Fragment, v.RawFragment = "", ""
	v.ForceQuery = false
	p := "delay=" + url.QueryEscape(d.String())
	if v.RawQuery == "" {
		v.RawQuery = p
	} else {
		v.RawQuery += "&" + p
	}
	return &v
}

// target is where a request goes and what it says.
type target struct {
	addr string // host:port to dial
	host string // Host header
	uri  string // request-target: path and query
}

func newTarget(u *url.URL) target {
	port := u.Port()
	if port == "" {
		port = "80"
	}
	return target{
		addr: net.JoinHostPort(u.Hostname(), port),
		host: u.Host,
		uri:  u.RequestURI(),
	}
}
