// Command hello is the README's server: kill -HUP $(cat /tmp/hello.pid) upgrades it.
package main

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"os"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/httpdrain"
)

func main() {
	upg, err := baton.New(baton.Options{PIDFile: "/tmp/hello.pid"})
	if err != nil {
		log.Fatal(err) // a broken handoff: the old generation keeps serving
	}
	defer upg.Stop()
	ln, err := upg.Listen("tcp", "127.0.0.1:8080") // the old generation's socket, or a new one
	if err != nil {
		log.Fatal(err)
	}
	srv := httpdrain.New(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from pid %d\n", os.Getpid())
	})}, httpdrain.Options{})
	upg.HandleSignals() // SIGHUP upgrades, SIGTERM and SIGINT stop
	go srv.Serve(ln)
	if err := upg.Ready(); err != nil {
		log.Fatal(err)
	}
	<-upg.Exit() // a successor serves now, or we were stopped: drain and go
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Drain(ctx)
}
