//go:build linux

package supervisor_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// lfdsWorker is a worker that knows nothing of baton: it takes its socket
// from LISTEN_FDS, as from systemd, serves GET / with pid=<pid> (and
// ?delay=), and on SIGTERM stops accepting, answers what comes with
// "Connection: close" and exits once no connection is left (or, under no
// load, once none has been busy for a second). LFDS_EXIT sets its exit
// status; LFDS_FAIL=1 makes it exit 3 at once.
func lfdsWorker() {
	pid := os.Getpid()
	if os.Getenv("LFDS_FAIL") == "1" {
		fmt.Fprintln(os.Stderr, "lfds: config error: no such upstream")
		os.Exit(3)
	}
	if os.Getenv("LISTEN_PID") != strconv.Itoa(pid) || os.Getenv("LISTEN_FDS") != "1" {
		fmt.Fprintf(os.Stderr, "lfds: LISTEN_PID=%q LISTEN_FDS=%q: no socket for pid %d\n", os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS"), pid)
		os.Exit(4)
	}
	f := os.NewFile(3, "listen")
	ln, err := net.FileListener(f)
	f.Close()
	if err != nil {
		fmt.Fprintln(os.Stderr, "lfds:", err)
		os.Exit(5)
	}
	var (
		mu       sync.Mutex
		conns    = map[net.Conn]http.ConnState{}
		draining bool
	)
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if d, err := time.ParseDuration(r.URL.Query().Get("delay")); err == nil && d > 0 && d < time.Minute {
				time.Sleep(d)
			}
			mu.Lock()
			if draining {
				w.Header().Set("Connection", "close")
			}
			mu.Unlock()
			fmt.Fprintf(w, "pid=%d\n", pid)
		}),
		ConnState: func(c net.Conn, s http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			if s == http.StateClosed || s == http.StateHijacked {
				delete(conns, c)
			} else {
				conns[c] = s
			}
		},
	}
	go srv.Serve(ln)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1, syscall.SIGWINCH)
	for s := <-sigs; s == syscall.SIGUSR1 || s == syscall.SIGWINCH; s = <-sigs {
		fmt.Fprintf(os.Stderr, "lfds: pid %d got %v\n", pid, s)
	}
	mu.Lock()
	draining = true
	mu.Unlock()
	ln.Close() // our copy only: the master and the next generation keep the socket
	quiet := time.Now()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n, busy := len(conns), 0
		for _, s := range conns {
			if s != http.StateIdle {
				busy++
			}
		}
		mu.Unlock()
		if busy > 0 {
			quiet = time.Now()
		}
		if n == 0 || time.Since(quiet) > time.Second {
			break
		}
	}
	code, _ := strconv.Atoi(os.Getenv("LFDS_EXIT"))
	os.Exit(code)
}
