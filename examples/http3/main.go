// Command http3 is baton's HTTP/3 example: a server on QUIC whose
// connections survive upgrades. See package server.
package main

import (
	"os"

	"github.com/batonhq/baton/examples/http3/server"
)

func main() { os.Exit(server.Main("http3", os.Args[1:], os.Stderr)) }
