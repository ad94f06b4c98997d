//go:build linux

package baton_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
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

// serverMain is one generation of a test server. It is configured by
// environment variables (inherited by every successor):
//
//	SRV_DIR        directory for the unix socket, the data file, markers
//	SRV_PIDFILE    Options.PIDFile
//	SRV_TIMEOUT    Options.UpgradeTimeout
//	SRV_EXE        Options.Executable
//	SRV_FAIL       "<gen>:<how>" — generation <gen> fails: exit (before
//	               Listen), exit-listen (after Listen, before Ready), stop
//	               (Stop, then exit, before Ready), hang,
//	               ready-exit (exits right after Ready); only once if the
//	               file SRV_DIR/fail-once exists (it is removed).
//	SRV_READY_DELAY "<gen>:<duration>" — generation <gen> sleeps before Ready
//	SRV_SOCKETS    extra TCP listeners to open (for benchmarks)
//	SRV_RESERVE    "<gen>:<n>" — generation <gen> holds n descriptors while
//	               it opens its listeners and frees them before it serves:
//	               n free descriptor numbers below every socket, so that it
//	               still accepts connections once its RLIMIT_NOFILE is
//	               lowered below its highest descriptor
//	SRV_DRAIN      drain deadline
//	SRV_IDLE_GRACE httpdrain.Options.IdleGrace
//	SRV_CHDIR      directory to change to right after New
//	SRV_CONTROL    Options.Control
//	SRV_FDSTORE    Options.FDStore, if set
//	SRV_LISTEN     the TCP address to listen on (default 127.0.0.1:0)
//	SRV_HANDLE_SIGNALS if set, Upgrader.HandleSignals handles the signals,
//	               wired right after New
//
// It serves HTTP on a TCP and a unix listener: GET / answers
// "pid=… gen=… fds=… data=… handoff=…", ?delay= sleeps first, POST /upgrade
// upgrades and answers "ok" or the error. UDP on the same port echoes
// "pid=…". SIGHUP upgrades, SIGTERM stops. It prints lines the test waits
// for: "new gen=G pid=P" (New returned: a successor holds the sockets),
// "ready gen=G pid=P tcp=ADDR udp=ADDR", "upgrade-failed …",
// "parent-gone gen=G", "exit gen=G".
func serverMain() {
	dir := os.Getenv("SRV_DIR")
	opts := baton.Options{
		PIDFile:    os.Getenv("SRV_PIDFILE"),
		Executable: os.Getenv("SRV_EXE"),
		Control:    os.Getenv("SRV_CONTROL"),
		FDStore:    os.Getenv("SRV_FDSTORE") != "",
		Logger:     slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if d, err := time.ParseDuration(os.Getenv("SRV_TIMEOUT")); err == nil {
		opts.UpgradeTimeout = d
	}
	upg, err := baton.New(opts)
	if err != nil {
		fmt.Println("new-failed", err)
		os.Exit(3)
	}
	gen := upg.Generation()
	handleSignals := os.Getenv("SRV_HANDLE_SIGNALS") != ""
	if handleSignals {
		upg.HandleSignals()
	}
	fmt.Printf("new gen=%d pid=%d\n", gen, os.Getpid())
	if d := os.Getenv("SRV_CHDIR"); d != "" {
		// The executable and the PID file must still be found.
		check(os.Chdir(d))
	}
	fail := genSetting(gen, "SRV_FAIL")
	if fail != "" && os.Getenv("SRV_FAIL_ONCE") != "" {
		if err := os.Remove(filepath.Join(dir, "fail-once")); err != nil {
			fail = ""
		}
	}
	if fail == "exit" {
		fmt.Fprintln(os.Stderr, "failing on purpose before Listen")
		os.Exit(7)
	}

	var reserve []*os.File
	if n, _ := strconv.Atoi(genSetting(gen, "SRV_RESERVE")); n > 0 {
		for range n {
			f, err := os.Open(os.DevNull)
			check(err)
			reserve = append(reserve, f)
		}
	}

	tcpAddr := os.Getenv("SRV_LISTEN")
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
	n, _ := strconv.Atoi(os.Getenv("SRV_SOCKETS"))
	for i := range n {
		l, err := extraListener(upg, i)
		check(err)
		extra = append(extra, l)
	}
	for _, f := range reserve {
		f.Close()
	}

	if fail == "stop" {
		fmt.Fprintln(os.Stderr, "stopping on purpose before Ready")
		upg.Stop()
		os.Exit(10)
	}
	if fail == "exit-listen" {
		fmt.Fprintln(os.Stderr, "failing on purpose after Listen")
		os.Exit(8)
	}
	if fail == "hang" {
		select {}
	}
	if fail == "sigstop" {
		fmt.Fprintln(os.Stderr, "stopping myself with SIGSTOP before Ready")
		syscall.Kill(os.Getpid(), syscall.SIGSTOP)
	}
	if d, err := time.ParseDuration(genSetting(gen, "SRV_READY_DELAY")); err == nil {
		time.Sleep(d)
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
	mux.HandleFunc("GET /env", func(w http.ResponseWriter, r *http.Request) {
		// What a grandchild started by this generation sees.
		out, _ := exec.Command("env").Output()
		w.Write(out)
	})
	var drainOpts httpdrain.Options
	if d, err := time.ParseDuration(os.Getenv("SRV_IDLE_GRACE")); err == nil {
		drainOpts.IdleGrace = d
	}
	srv := httpdrain.New(&http.Server{Handler: mux}, drainOpts)
	go srv.Serve(tcp)
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
	if !handleSignals {
		signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	}
	check(upg.Ready())
	fmt.Printf("ready gen=%d pid=%d tcp=%s udp=%s\n", gen, os.Getpid(), tcp.Addr(), udp.LocalAddr())
	if fail == "ready-exit" {
		os.Exit(9)
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
	udp.Close() // the successor reads it now
	drain := 10 * time.Second
	if d, err := time.ParseDuration(os.Getenv("SRV_DRAIN")); err == nil {
		drain = d
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := srv.Drain(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "drain:", err)
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

// genSetting returns the value of an "<gen>:<value>" variable for gen.
func genSetting(gen int, key string) string {
	g, v, ok := strings.Cut(os.Getenv(key), ":")
	if !ok || g != strconv.Itoa(gen) {
		return ""
	}
	return v
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(4)
	}
}
