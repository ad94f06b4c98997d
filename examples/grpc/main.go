// Command grpc is baton's gRPC example: an echo service whose calls survive
// upgrades. See package server.
package main

import (
	"os"

	"github.com/batonhq/baton/examples/grpc/server"
)

func main() { os.Exit(server.Main("grpc", os.Args[1:], os.Stderr)) }
