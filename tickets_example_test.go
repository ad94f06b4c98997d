package baton_test

import (
	"context"
	"crypto/tls"
	"log"
	"net/http"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/httpdrain"
)

// An HTTPS server whose clients resume their TLS sessions with every
// successor: one call, before Ready, carries the session ticket keys from
// each generation to the next and rotates them. (Compiled, not run: New
// may be called once per process.)
func ExampleUpgrader_TLSSessionTickets() {
	upg, err := baton.New(baton.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer upg.Stop()
	ln, err := upg.Listen("tcp", "127.0.0.1:8443")
	if err != nil {
		log.Fatal(err)
	}
	// Each generation reads the files: a renewed certificate goes live
	// with the next upgrade.
	cert, err := tls.LoadX509KeyPair("/etc/app/cert.pem", "/etc/app/key.pem")
	if err != nil {
		log.Fatal(err) // a successor exits; its predecessor serves on
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	if err := upg.TLSSessionTickets(cfg, baton.TicketOptions{}); err != nil {
		log.Fatal(err)
	}
	srv := httpdrain.New(&http.Server{ReadHeaderTimeout: 10 * time.Second}, httpdrain.Options{})
	go srv.Serve(tls.NewListener(ln, cfg))

	upg.HandleSignals()
	if err := upg.Ready(); err != nil {
		log.Fatal(err)
	}
	<-upg.Exit()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	srv.Drain(ctx)
}
