package quicroute_test

import (
	"context"
	"crypto/tls"
	"log"
	"net/http"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/quicroute"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// An HTTP/3 server on baton whose QUIC connections survive upgrades:
// SIGHUP upgrades it, SIGTERM stops it. See examples/http3 for a complete
// server.
func Example() {
	upg, err := baton.New(baton.Options{PIDFile: "/run/h3.pid"})
	if err != nil {
		log.Fatal(err)
	}
	defer upg.Stop()
	tlsConf := &tls.Config{ /* Certificates: ... */ }
	if err := upg.TLSSessionTickets(tlsConf, baton.TicketOptions{}); err != nil {
		log.Fatal(err)
	}
	keys, err := quicroute.Keys(upg)
	if err != nil {
		log.Fatal(err)
	}
	pc, err := upg.ListenPacket("udp", "127.0.0.1:443")
	if err != nil {
		log.Fatal(err)
	}
	// Before Ready: the predecessor relays from the moment we are ready.
	router, err := quicroute.NewRouter(upg, pc, quicroute.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer router.Close()
	conns := quicroute.NewConns()
	tr := &quic.Transport{
		Conn:                  router,
		ConnectionIDGenerator: router.CIDGenerator(),
		StatelessResetKey:     &keys.StatelessReset,
		TokenGeneratorKey:     &keys.Token,
		ConnContext:           conns.TransportConnContext,
	}
	defer tr.Close()
	// tlsConf itself for every handshake: a clone would freeze the
	// session ticket keys that TLSSessionTickets rotates.
	serving := &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return tlsConf, nil }}
	ln, err := tr.ListenEarly(http3.ConfigureTLSConfig(serving), &quic.Config{Allow0RTT: true})
	if err != nil {
		log.Fatal(err)
	}
	srv := &http3.Server{Handler: http.NotFoundHandler(), ConnContext: conns.HTTP3ConnContext}
	upg.HandleSignals()
	go srv.ServeListener(ln)
	if err := upg.Ready(); err != nil {
		log.Fatal(err)
	}
	<-upg.Exit()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res, err := conns.Drain(ctx, srv, ln); err != nil {
		log.Printf("drained: %+v: %v", res, err)
	}
}
