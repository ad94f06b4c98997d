//go:build linux

package baton_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/httpdrain"
	"github.com/batonhq/baton/internal/proctest"
)

func TestMain(m *testing.M) {
	proctest.Register("server", serverMain)
	proctest.Main(m)
}

// serverEnv names the environment variable that carries the test server's
// serverConfig, JSON-encoded. Every successor inherits it unchanged, so
// every generation of one server reads the same configuration.
const serverEnv = "BATON_TEST_SERVER"

// failure is how a generation of the test server fails on purpose.
type failure string

const (
	failExit       failure = "exit"        // exit 7 before Listen
	failExitListen failure = "exit-listen" // exit 8 after Listen, before Ready
	failStop       failure = "stop"        // Stop, then exit 10, before Ready
	failHang       failure = "hang"        // block forever before Ready
	failSIGSTOP    failure = "sigstop"     // stop itself with SIGSTOP before Ready
	failReadyExit  failure = "ready-exit"  // exit 9 right after Ready
	// exit 11, or SIGKILL itself, FailAfter after Ready returned
	failExitAfter failure = "exit-after-ready"
	failKillAfter failure = "kill-after-ready"
)

// serverConfig configures the test server (serverMain). The zero value
// serves with baton's defaults, except that Dir must be set: startServer
// sets it to a new temporary directory if it is empty.
type serverConfig struct {
	// Dir holds the unix socket, the data file and markers.
	Dir string

	PIDFile        string        // Options.PIDFile
	UpgradeTimeout time.Duration // Options.UpgradeTimeout
	Executable     string        // Options.Executable
	Control        string        // Options.Control
	FDStore        bool          // Options.FDStore
	Probation      time.Duration // Options.Probation

	// Fail, if set, is how generation FailGen fails. With FailOnce it
	// fails only if the file Dir/fail-once exists, which it removes.
	Fail     failure
	FailGen  int
	FailOnce bool
	// FailAfter is how long after Ready failExitAfter and failKillAfter
	// strike, and set only with them.
	FailAfter time.Duration

	// ReadyDelay is how long generation ReadyDelayGen sleeps before Ready.
	ReadyDelay    time.Duration
	ReadyDelayGen int

	// Sockets is how many extra TCP listeners to open (named extra-<i>).
	Sockets int

	// Reserve is how many descriptors generation ReserveGen holds while it
	// opens its listeners and frees before it serves: free descriptor
	// numbers below every socket, so that it still accepts connections
	// once its RLIMIT_NOFILE is lowered below its highest descriptor.
	Reserve    int
	ReserveGen int

	Drain     time.Duration // the drain deadline; defaults to 10s
	IdleGrace time.Duration // httpdrain.Options.IdleGrace

	// Chdir is the directory to change to right after New: the executable
	// and the PID file must still be found.
	Chdir string

	// Listen is the TCP address to listen on; defaults to 127.0.0.1:0.
	Listen string

	// HandleSignals makes Upgrader.HandleSignals handle the signals,
	// wired right after New, instead of the server's own handler.
	HandleSignals bool

	// Echo serves the line protocol of echoServer on a TCP listener
	// named "echo", whose connections go over the generation link; each
	// generation sets the state blob "counter" and prints its
	// predecessor's.
	Echo bool
	// NoHandedGen is a generation that does not ask for handed echo
	// connections, and so refuses them.
	NoHandedGen int
	// MoveOnExit hands every idle echo connection to the successor once
	// Exit is closed.
	MoveOnExit bool

	// TLSCert and TLSKey, if set, serve HTTPS with these PEM files on a
	// TCP listener named "tls", with TLSSessionTickets, rotating every
	// TicketRotation and keeping TicketKeys keys (TicketOptions).
	TLSCert, TLSKey string
	TicketRotation  time.Duration
	TicketKeys      int
}

// env returns cfg as the environment entry serverMain reads.
func (cfg serverConfig) env() string {
	b, err := json.Marshal(cfg)
	if err != nil {
		panic(err) // a struct of strings, numbers and bools always encodes
	}
	return serverEnv + "=" + string(b)
}

// readServerConfig decodes the configuration in the environment strictly:
// an unknown field, a wrong type, trailing data, a missing Dir, an unknown
// failure or a per-generation setting without its generation is an error,
// so that a test cannot configure what the server ignores.
func readServerConfig() (serverConfig, error) {
	var cfg serverConfig
	v, ok := os.LookupEnv(serverEnv)
	if !ok {
		return cfg, fmt.Errorf("%s is not set", serverEnv)
	}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", serverEnv, err)
	}
	if dec.More() {
		return cfg, fmt.Errorf("%s: data after the configuration", serverEnv)
	}
	switch {
	case cfg.Dir == "":
		return cfg, fmt.Errorf("%s: no Dir", serverEnv)
	case !slices.Contains([]failure{"", failExit, failExitListen, failStop, failHang, failSIGSTOP, failReadyExit, failExitAfter, failKillAfter}, cfg.Fail):
		return cfg, fmt.Errorf("%s: unknown Fail %q", serverEnv, cfg.Fail)
	case (cfg.FailAfter > 0) != (cfg.Fail == failExitAfter || cfg.Fail == failKillAfter):
		return cfg, fmt.Errorf("%s: FailAfter %v with Fail %q: want it with %q or %q only", serverEnv, cfg.FailAfter, cfg.Fail, failExitAfter, failKillAfter)
	case (cfg.Fail != "") != (cfg.FailGen > 0), cfg.FailOnce && cfg.Fail == "":
		return cfg, fmt.Errorf("%s: Fail %q for generation %d (FailOnce %t): want both or neither", serverEnv, cfg.Fail, cfg.FailGen, cfg.FailOnce)
	case (cfg.ReadyDelay > 0) != (cfg.ReadyDelayGen > 0):
		return cfg, fmt.Errorf("%s: ReadyDelay %v for generation %d: want both or neither", serverEnv, cfg.ReadyDelay, cfg.ReadyDelayGen)
	case (cfg.Reserve > 0) != (cfg.ReserveGen > 0):
		return cfg, fmt.Errorf("%s: Reserve %d for generation %d: want both or neither", serverEnv, cfg.Reserve, cfg.ReserveGen)
	case !cfg.Echo && (cfg.NoHandedGen > 0 || cfg.MoveOnExit):
		return cfg, fmt.Errorf("%s: NoHandedGen %d, MoveOnExit %t without Echo", serverEnv, cfg.NoHandedGen, cfg.MoveOnExit)
	case (cfg.TLSCert != "") != (cfg.TLSKey != ""), cfg.TLSCert == "" && (cfg.TicketRotation != 0 || cfg.TicketKeys != 0):
		return cfg, fmt.Errorf("%s: TLSCert %q, TLSKey %q, TicketRotation %v, TicketKeys %d: want a certificate and a key, or no TLS setting", serverEnv, cfg.TLSCert, cfg.TLSKey, cfg.TicketRotation, cfg.TicketKeys)
	}
	return cfg, nil
}

// serverMain is one generation of a test server, configured by the
// serverConfig in $BATON_TEST_SERVER.
//
// It serves HTTP on a TCP and a unix listener: GET / answers
// "pid=… gen=… fds=… data=… handoff=…", ?delay= sleeps first, POST /upgrade
// upgrades and answers "ok" or the error, GET /goroutines answers
// "goroutines=N". UDP on the same port echoes
// "pid=…". SIGHUP upgrades, SIGTERM stops. It prints lines the test waits
// for: "new gen=G pid=P" (New returned: a successor holds the sockets),
// "ready gen=G pid=P tcp=ADDR udp=ADDR", "upgrade-failed …",
// "parent-gone gen=G", "draining gen=G pid=P" (Exit closed), "exit gen=G".
func serverMain() {
	cfg, err := readServerConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(5)
	}
	dir := cfg.Dir
	upg, err := baton.New(baton.Options{
		PIDFile:        cfg.PIDFile,
		UpgradeTimeout: cfg.UpgradeTimeout,
		Executable:     cfg.Executable,
		Control:        cfg.Control,
		FDStore:        cfg.FDStore,
		Probation:      cfg.Probation,
		Logger:         slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		fmt.Println("new-failed", err)
		os.Exit(3)
	}
	gen := upg.Generation()
	if cfg.HandleSignals {
		upg.HandleSignals()
	}
	fmt.Printf("new gen=%d pid=%d\n", gen, os.Getpid())
	if cfg.Chdir != "" {
		// The executable and the PID file must still be found.
		check(os.Chdir(cfg.Chdir))
	}
	var fail failure
	if cfg.FailGen == gen {
		fail = cfg.Fail
	}
	if fail != "" && cfg.FailOnce {
		if err := os.Remove(filepath.Join(dir, "fail-once")); err != nil {
			fail = ""
		}
	}
	if fail == failExit {
		fmt.Fprintln(os.Stderr, "failing on purpose before Listen")
		os.Exit(7)
	}

	var reserve []*os.File
	if cfg.ReserveGen == gen {
		for range cfg.Reserve {
			f, err := os.Open(os.DevNull)
			check(err)
			reserve = append(reserve, f)
		}
	}

	tcpAddr := cfg.Listen
	if tcpAddr == "" {
		tcpAddr = "127.0.0.1:0"
	}
	tcp, err := upg.Listen("tcp", tcpAddr)
	check(err)
	udp, err := upg.ListenPacket("udp", "127.0.0.1:0")
	check(err)
	unixLn, err := upg.Listen("unix", filepath.Join(dir, "s.sock"))
	check(err)
	var data string
	if gen == 1 {
		f, err := os.Create(filepath.Join(dir, "data"))
		check(err)
		fmt.Fprint(f, "hello-from-gen1")
		f.Seek(0, io.SeekStart)
		check(upg.Add("data", f))
		f.Close()
	}
	if f, err := upg.File("data"); err == nil {
		b := make([]byte, 64)
		n, _ := f.ReadAt(b, 0)
		data = string(b[:n])
		f.Close()
	}
	var extra []net.Listener
	for i := range cfg.Sockets {
		l, err := extraListener(upg, i)
		check(err)
		extra = append(extra, l)
	}
	var echo *echoServer
	if cfg.Echo {
		echo = startEcho(upg, cfg, gen)
	}
	for _, f := range reserve {
		f.Close()
	}

	if fail == failStop {
		fmt.Fprintln(os.Stderr, "stopping on purpose before Ready")
		upg.Stop()
		os.Exit(10)
	}
	if fail == failExitListen {
		fmt.Fprintln(os.Stderr, "failing on purpose after Listen")
		os.Exit(8)
	}
	if fail == failHang {
		select {}
	}
	if fail == failSIGSTOP {
		fmt.Fprintln(os.Stderr, "stopping myself with SIGSTOP before Ready")
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	}
	if cfg.ReadyDelayGen == gen {
		time.Sleep(cfg.ReadyDelay)
	}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /", func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil {
			time.Sleep(d)
		}
		_, handoff := os.LookupEnv("BATON_HANDOFF")
		exe, _ := os.Readlink("/proc/self/exe")
		fmt.Fprintf(w, "pid=%d gen=%d fds=%d data=%s handoff=%t exe=%s\n",
			os.Getpid(), gen, proctest.FdCount(os.Getpid()), data, handoff, exe)
	})
	mux.HandleFunc("POST /upgrade", func(w http.ResponseWriter, r *http.Request) {
		if err := upg.Upgrade(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /goroutines", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "goroutines=%d\n", runtime.NumGoroutine())
	})
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		// What a grandchild started by this generation sees.
		out, _ := exec.Command("env").Output()
		w.Write(out)
	})
	srv := httpdrain.New(&http.Server{Handler: mux}, httpdrain.Options{IdleGrace: cfg.IdleGrace})
	go srv.Serve(tcp)
	if cfg.TLSCert != "" {
		go srv.Serve(tlsListener(upg, cfg, gen))
	}
	go srv.Serve(unixLn)
	go func() {
		b := make([]byte, 512)
		for {
			n, addr, err := udp.ReadFrom(b)
			if err != nil {
				return
			}
			udp.WriteTo([]byte(fmt.Sprintf("pid=%d %s", os.Getpid(), b[:n])), addr)
		}
	}()

	// Signals are wired before anyone is told we are ready: a SIGHUP's
	// default action would kill us.
	sigs := make(chan os.Signal, 4)
	if !cfg.HandleSignals {
		signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	}
	check(upg.Ready())
	fmt.Printf("ready gen=%d pid=%d tcp=%s udp=%s\n", gen, os.Getpid(), tcp.Addr(), udp.LocalAddr())
	if fail == failReadyExit {
		os.Exit(9)
	}
	if fail == failExitAfter || fail == failKillAfter {
		time.AfterFunc(cfg.FailAfter, func() {
			if fail == failKillAfter {
				// As an operator's kill -9 would: no exit path runs.
				syscall.Kill(os.Getpid(), syscall.SIGKILL)
			}
			os.Exit(11)
		})
	}
	go func() {
		upg.WaitForParent(context.Background())
		if upg.HasParent() {
			fmt.Printf("parent-gone gen=%d\n", gen)
		}
	}()

	go func() {
		for s := range sigs {
			if s == syscall.SIGHUP {
				if err := upg.Upgrade(); err != nil {
					fmt.Printf("upgrade-failed gen=%d err=%q\n", gen, err)
				}
				continue
			}
			upg.Stop()
		}
	}()

	<-upg.Exit()
	fmt.Printf("draining gen=%d pid=%d\n", gen, os.Getpid())
	udp.Close() // the successor reads it now
	if echo != nil && cfg.MoveOnExit {
		echo.moveAll()
	}
	drain := 10 * time.Second
	if cfg.Drain > 0 {
		drain = cfg.Drain
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Drain(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "drain:", err)
	}
	if echo != nil {
		echo.drain(ctx)
	}
	for _, l := range extra {
		l.Close()
	}
	upg.Stop()
	fmt.Printf("exit gen=%d pid=%d\n", gen, os.Getpid())
}

// extraListener returns the listener named extra-<i>, inherited or new.
func extraListener(upg *baton.Upgrader, i int) (net.Listener, error) {
	name := "extra-" + strconv.Itoa(i)
	if l, err := upg.Listener(name); err == nil {
		return l, nil
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	return l, upg.Add(name, l.(*net.TCPListener))
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(4)
	}
}

// The test server refuses a configuration it would partly ignore, and
// reads back what env wrote.
func TestServerConfigStrict(t *testing.T) {
	good := serverConfig{Dir: "/tmp/x", FailGen: 2, Fail: failHang, UpgradeTimeout: time.Second}
	t.Setenv(serverEnv, strings.TrimPrefix(good.env(), serverEnv+"="))
	if got, err := readServerConfig(); err != nil || got != good {
		t.Errorf("readServerConfig of %+v = %+v, %v; want it back", good, got, err)
	}
	for _, bad := range []string{
		``,
		`{}`,
		`{"Dir":"/tmp/x","Bogus":1}`,
		`{"Dir":"/tmp/x","Drain":"1s"}`,
		`{"Dir":"/tmp/x"} {}`,
		`{"Dir":"/tmp/x","Fail":"explode","FailGen":2}`,
		`{"Dir":"/tmp/x","Fail":"exit"}`,
		`{"Dir":"/tmp/x","ReadyDelay":1000}`,
		`{"Dir":"/tmp/x","Reserve":10}`,
		`{"Dir":"/tmp/x","TLSCert":"c"}`,
		`{"Dir":"/tmp/x","TicketRotation":1000}`,
	} {
		t.Setenv(serverEnv, bad)
		if got, err := readServerConfig(); err == nil {
			t.Errorf("readServerConfig of %s = %+v, nil; want an error", bad, got)
		}
	}
}
