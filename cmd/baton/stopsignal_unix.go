//go:build unix

package main

import "syscall"

// stopSignals are the signals -stop-signal takes, by name.
var stopSignals = map[string]syscall.Signal{
	"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "QUIT": syscall.SIGQUIT,
	"HUP": syscall.SIGHUP, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2,
	"WINCH": syscall.SIGWINCH, "KILL": syscall.SIGKILL,
}
