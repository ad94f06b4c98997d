//go:build !unix

package main

import "syscall"

// stopSignals: "baton run" needs Linux; these keep the command building.
var stopSignals = map[string]syscall.Signal{
	"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL,
}
