// Command websocket is baton's WebSocket example: an echo server whose
// connections survive upgrades. See package server.
package main

import (
	"os"

	"github.com/batonhq/baton/examples/websocket/server"
)

func main() { os.Exit(server.Main("websocket", os.Args[1:], os.Stderr)) }
