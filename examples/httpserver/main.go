// Command httpserver is baton's reference server: an HTTP server that
// upgrades itself on SIGHUP without failing a request. Its code is in
// server/server.go beside this file — read Run there, from the top: each
// step of using the library, and why it comes where it does. "baton demo"
// runs the same server under load.
//
//	go build -o /tmp/httpserver ./examples/httpserver
//	/tmp/httpserver -listen 127.0.0.1:8080 -pid-file /tmp/httpserver.pid &
//	curl 127.0.0.1:8080/            # pid=… gen=1
//	kill -HUP $(cat /tmp/httpserver.pid)
//	curl 127.0.0.1:8080/            # pid=… gen=2, same socket
//
// Flags: -listen ADDR -pid-file PATH -drain D -upgrade-timeout D
// -control PATH -fd-store -idle-grace D -tls-cert FILE -tls-key FILE
// -max-draining N -close-pace D
// (see "httpserver -h" and the
// package documentation of server).
package main

import (
	"os"

	"github.com/batonhq/baton/examples/httpserver/server"
)

func main() { os.Exit(server.Main(os.Args[0], os.Args[1:], os.Stderr)) }
