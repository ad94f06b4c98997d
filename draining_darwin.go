package baton

import "os"

// boundSupported: without /proc a generation cannot be named for good (a
// pid alone may be reused), so MaxDraining is ignored, with a warning.
const boundSupported = false

func thisGeneration(gen int) (genID, bool) { return genID{}, false }

func stillRuns(id genID) bool { return false }

func stopGeneration(id genID) error { return ErrNotSupported }

func establishedConns(pid int) int { return -1 }

// hurrySignals: none, without the bound.
var hurrySignals []os.Signal
