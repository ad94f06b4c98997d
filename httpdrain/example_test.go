package httpdrain_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/batonhq/baton/httpdrain"
)

func ExampleServer_Drain() {
	// In a real handoff the listener comes from the previous generation,
	// and the next generation receives it too.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }),
		ReadHeaderTimeout: 10 * time.Second,
	}
	hs := httpdrain.New(srv, httpdrain.Options{})
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	// ... the successor is ready: step down.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := hs.Drain(ctx); err != nil {
		log.Print(err) // some connections were closed at the deadline
	}
	fmt.Println(<-served)
	// Output: http: Server closed
}

func ExampleServer_Hijacked() {
	var hs *httpdrain.Server
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		done := hs.Hijacked(conn) // before the handler returns
		go func() {
			defer done()
			defer conn.Close()
			// ... serve the protocol on brw until the peer leaves or
			// the server drains:
			<-hs.Draining()
			brw.WriteString("goodbye\n") // the protocol's own goodbye
			brw.Flush()
		}()
	})
	hs = httpdrain.New(&http.Server{Handler: mux}, httpdrain.Options{})
}
