package supervisor

import "time"

// The restart policy of a serving worker that crashes (see
// Config.RestartLimit): when to try again, and when to give up. Pure, so
// that it is tested without processes; the run loop applies it.

// The backoff before a crashed worker is restarted: restartDelay after the
// first crash within Config.RestartWindow, doubled for each further one,
// at most maxRestartDelay. Short, because connections wait in the accept
// queue meanwhile; growing, so that a worker that crashes at once does not
// make the master spin.
const (
	restartDelay    = 100 * time.Millisecond
	maxRestartDelay = 5 * time.Second
)

// restartBackoff is the wait before the restart that follows the nth
// failure within the window (n from 1).
func restartBackoff(n int) time.Duration {
	d := restartDelay
	for i := 1; i < n && d < maxRestartDelay; i++ {
		d *= 2
	}
	return min(d, maxRestartDelay)
}

// crashLog is the failures of the worker within the restart window.
type crashLog []time.Time

// add records a failure at now, forgets those older than window, and
// returns how many remain, this one included.
func (l *crashLog) add(now time.Time, window time.Duration) int {
	keep := (*l)[:0]
	for _, t := range *l {
		if now.Sub(t) < window {
			keep = append(keep, t)
		}
	}
	*l = append(keep, now)
	return len(*l)
}

// restartVerdict is what follows the nth failure within the window.
type restartVerdict int

const (
	restartAfterBackoff restartVerdict = iota // restart after restartBackoff(n)
	restartGiveUp                             // more failures than the limit: stop
	restartNever                              // the limit says never restart: stop
)

// decideRestart applies Config.RestartLimit (already defaulted: negative
// is never) to the nth failure within the window.
func decideRestart(n, limit int) restartVerdict {
	switch {
	case limit < 0:
		return restartNever
	case n > limit:
		return restartGiveUp
	}
	return restartAfterBackoff
}
