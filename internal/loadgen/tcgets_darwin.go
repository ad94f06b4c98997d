package loadgen

import "golang.org/x/sys/unix"

// getTermios is the ioctl that reads terminal attributes.
const getTermios = unix.TIOCGETA
