// Command rebind is the server "baton verify" must catch: it "upgrades" on
// SIGHUP the naive way — close the listening socket, pause, listen again on
// the same port — so for a moment nobody listens, new connections are
// refused and those in the accept queue are reset. Its pid never changes.
//
//	rebind -listen 127.0.0.1:PORT -pid-file PATH
//
// GET / answers "pid=<pid> gen=<n>", GET /?delay=D sleeps first, like the
// demo server. SIGTERM and SIGINT stop it.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "TCP `address` to serve on")
	pidFile := flag.String("pid-file", "", "write the pid to `path` once listening")
	gap := flag.Duration("gap", 50*time.Millisecond, "how long nobody listens during an upgrade")
	flag.Parse()

	var gen atomic.Int64
	gen.Store(1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if v := r.URL.Query().Get("delay"); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > time.Minute {
				http.Error(w, "bad delay", http.StatusBadRequest)
				return
			}
			time.Sleep(d)
		}
		fmt.Fprintf(w, "pid=%d gen=%d\n", os.Getpid(), gen.Load())
	})}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(ln)
	if *pidFile != "" {
		if err := os.WriteFile(*pidFile, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	for s := range sig {
		if s != syscall.SIGHUP {
			srv.Close()
			return
		}
		// The mistake under test: a re-bind instead of a handoff.
		ln.Close()
		time.Sleep(*gap)
		if ln, err = net.Listen("tcp", ln.Addr().String()); err != nil {
			log.Fatal(err)
		}
		gen.Add(1)
		go srv.Serve(ln)
		log.Printf("re-bound %s, gen %d", *listen, gen.Load())
	}
}
