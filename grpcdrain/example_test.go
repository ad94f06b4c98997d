package grpcdrain_test

import (
	"context"
	"log"
	"time"

	"github.com/batonhq/baton"
	"github.com/batonhq/baton/grpcdrain"
)

// A gRPC server on baton: SIGHUP upgrades it, SIGTERM stops it, and either
// way its calls end cleanly. See examples/grpc for a complete server.
func Example() {
	upg, err := baton.New(baton.Options{PIDFile: "/run/echo.pid"})
	if err != nil {
		log.Fatal(err)
	}
	defer upg.Stop()
	ln, err := upg.Listen("tcp", "127.0.0.1:50051")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpcdrain.NewServer(grpcdrain.Options{Hurry: upg.Hurry()})
	// Register services on srv here: pb.RegisterEchoServer(srv, ...).
	go srv.Serve(ln)
	upg.HandleSignals()
	if err := upg.Ready(); err != nil {
		log.Fatal(err)
	}
	<-upg.Exit()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := srv.Drain(ctx); err != nil {
		log.Print(err)
	}
}
