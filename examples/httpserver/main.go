// Command httpserver is baton's demo server: an HTTP server that upgrades
// itself on SIGHUP without failing a request. Its code, with comments, is in
// internal/demoserver; "baton demo" runs the same server under load.
//
//	go build -o /tmp/httpserver ./examples/httpserver
//	/tmp/httpserver -listen 127.0.0.1:8080 -pid-file /tmp/httpserver.pid &
//	curl 127.0.0.1:8080/            # pid=… gen=1
//	kill -HUP $(cat /tmp/httpserver.pid)
//	curl 127.0.0.1:8080/            # pid=… gen=2, same socket
package main

import (
	"os"

	"github.com/batonhq/baton/internal/demoserver"
)

func main() { os.Exit(demoserver.Main(os.Args[0], os.Args[1:], os.Stderr)) }
