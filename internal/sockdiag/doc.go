// Package sockdiag asks the Linux kernel about sockets through
// NETLINK_SOCK_DIAG: the exact lookup of one TCP socket by its addresses,
// a dump of the TCP sockets in chosen states, and the inodes of the Unix
// domain sockets. It is the one place baton speaks sock_diag: the master's
// readiness probe, its status's connection counts and the library's bound
// on draining generations all come here.
//
// Why not /proc/net/tcp (internal/procfs reads it, for tests): it lists
// every TCP socket of the host, TIME_WAIT included — 100,000 of them, 16 MB
// of text, on a host under load, which takes seconds to read — and is not
// read atomically. sock_diag filters by state in the kernel (it still walks
// every socket: about 25 ms for 65,000 here) and looks one socket up
// without a walk at all.
//
// The codec is pure: requests are built and answers parsed by functions
// from values to bytes and back, strict about lengths and fuzzed; only
// Conn touches the kernel.
package sockdiag
