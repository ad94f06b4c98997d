// Package systemd speaks the two protocols a service shares with systemd:
// notifications to the service manager (sd_notify(3)) and descriptors from
// it, by socket activation or from its file descriptor store
// (sd_listen_fds(3)). It depends on nothing else in baton.
//
// # Notifications
//
// A service started with NOTIFY_SOCKET in its environment tells the manager
// about itself by sending datagrams to that Unix socket (a path, or "@" and
// an abstract name). A datagram is a list of KEY=VALUE fields separated by
// newlines, at most MaxMessageSize bytes, optionally with up to MaxFDs
// descriptors attached as SCM_RIGHTS. [NewNotifier] reads the variable and
// returns a [*Notifier]; its methods build the message with a pure,
// validating encoder (a value with a newline, a NUL byte or invalid UTF-8,
// a bad descriptor name, or an oversized message is an error, not a
// notification systemd silently drops) and send it from a fresh
// SOCK_DGRAM socket:
//
//	READY=1                      Ready: start-up or reload complete
//	RELOADING=1 MONOTONIC_USEC=  Reloading: a reload began (Type=notify-reload)
//	STOPPING=1                   Stopping: the service is going away
//	STATUS=…                     Status: the line systemctl status shows
//	MAINPID=…                    MainPID: another process is now the main one
//	BARRIER=1 + a pipe           Barrier: wait until all the above is processed
//	FDSTORE=1 FDNAME=… + fds     FDStore: keep descriptors across restarts
//	FDSTOREREMOVE=1 FDNAME=…     FDStoreRemove: drop them
//	WATCHDOG=1                   Watchdog: still alive (WatchdogInterval)
//
// Anything else goes through [Notifier.Send] and [Notifier.SendFDs].
//
// When NOTIFY_SOCKET is unset NewNotifier returns nil, and a nil *Notifier
// is a no-op: every method returns nil at once. A program calls n.Ready()
// the same way under systemd, under another supervisor or by hand.
//
// # Who may notify
//
// systemd never trusts what a message says about its sender: it takes the
// sender's pid from the kernel (SCM_CREDENTIALS) and drops the message
// unless the unit's NotifyAccess= allows that pid. The default for
// Type=notify is NotifyAccess=main: only the main process is heard. A
// successor that announces itself (MAINPID=<its own pid>) therefore needs
// NotifyAccess=all, or, on systemd 254 and later, the main process sending
// "NOTIFYACCESS=all" first. With NotifyAccess=main the incumbent can name
// the successor instead (MAINPID=<successor pid>, then Barrier); from then
// on the successor is the main process and is heard. An unprivileged
// sender can only name, as MAINPID=, a process in the service's own
// cgroup. Barrier alone works from any process.
//
// # Handing over the main process
//
// systemd watches one main process; when it exits, the service is over.
// A successor must therefore become the main process before the incumbent
// exits:
//
//  1. The incumbent, on a reload request, sends Reloading (Type=notify-reload
//     requires it, within the reload timeout) and starts the successor.
//  2. The successor, once it serves, sends "MAINPID=<its pid>" and
//     "READY=1" in one message (Send), then calls Barrier.
//  3. Only when Barrier has returned nil does it tell the incumbent to
//     step down. The incumbent drains and exits; systemd no longer cares.
//
// Barrier matters because the notification socket is a queue and exit is
// not: without it the incumbent's exit can reach systemd before the
// MAINPID= that was sent earlier, and the service is declared dead. It
// sends BARRIER=1 with the write end of a pipe and waits until that end
// is closed, which systemd does once it has processed every message queued
// before it, from any sender.
//
// The incumbent must not send STOPPING=1 during a handover: systemd would
// take it for the whole service stopping. A main process that is not
// systemd's own child is "alien" to it: systemd watches it by polling and
// has been reported to stop it with SIGTERM and SIGKILL back to back; in
// baton's tests with systemd 252 as PID 1 of a container, where orphans
// are reparented to systemd at once, it waited for the drain instead. A
// successor started as systemd's child (CLONE_PARENT, as package baton
// does, or a double fork) is never alien, and is stopped gracefully.
//
// Two more facts of systemd 252 worth knowing: "systemctl reload" of a
// Type=notify service returns when ExecReload exits, not when READY=1
// comes (Type=notify-reload, systemd 253, waits); and a unit restarted
// more than five times in ten seconds fails with start-limit-hit unless
// StartLimitIntervalSec=0.
//
// Facts of systemd 257 (Debian trixie), each proven by baton's
// integration tests (integration/systemd):
//
//   - Type=notify-reload: "systemctl reload" sends SIGHUP and returns once
//     READY=1 follows a RELOADING=1 whose MONOTONIC_USEC= is not older
//     than the signal, as Reloading sends it. RELOADING=1 without it is
//     ignored, and so is the READY=1 after it: the reload fails at its
//     timeout (TimeoutStartSec=, ReloadResult=timeout).
//   - READY=1 ends a reload as done, whatever STATUS= says: there is no
//     "reload failed" notification, so a reload whose upgrade failed
//     exits 0, and STATUS= is where the reason goes.
//   - MAINPID= from a process that NotifyAccess= does not admit is dropped
//     without a word in the journal at the default log level (252 logs
//     "reception only permitted for main PID"). NotifyAccess=exec admits
//     the main and control processes, not their children: a successor
//     needs NotifyAccess=all, or NOTIFYACCESS=all from the main process
//     first.
//
// # Activation and the file descriptor store
//
// A service started by a .socket unit, or holding descriptors in its file
// descriptor store (FileDescriptorStoreMax=), gets them at descriptor 3
// (ListenFDsStart) and up, described by LISTEN_PID, LISTEN_FDS and
// LISTEN_FDNAMES:
//
//   - they are meant for this process only if LISTEN_PID is its pid: an
//     inherited set meant for a parent is ignored, not an error;
//   - LISTEN_FDS says how many there are, from 1 to MaxListenFDs;
//   - LISTEN_FDNAMES, if set, names each of them, separated by ':'
//     (FileDescriptorName= of the socket unit, or the FDNAME= a descriptor
//     was stored under); if unset every name is "unknown".
//
// [ParseListenEnv] is the pure reading of these rules. [Listeners] applies
// it to the environment, removes the variables (so no child inherits
// them), makes the descriptors close-on-exec and returns them as
// [Activated] values the caller owns. [Activated.Addr] tells what each one
// is ("tcp", "127.0.0.1:8080", listening), so that a request to listen on
// an address can be answered with the activated socket for it. [ListenEnv]
// writes the variables for a process this one starts.
//
// Descriptors handed to [Notifier.FDStore] come back the same way, with
// their names, the next time systemd starts the service (and across a stop,
// with FileDescriptorStorePreserve=yes on systemd 254 and later).
//
// # Units
//
// A service that replaces itself on reload:
//
//	[Service]
//	# systemd 253 and later; before, Type=notify and
//	# ExecReload=/bin/kill -HUP $MAINPID
//	Type=notify-reload
//	# The successor sends MAINPID=.
//	NotifyAccess=all
//	ExecStart=/usr/local/bin/app
//
// (Unit files take comments on lines of their own only.)
//
// A service started by socket activation, app.socket beside app.service:
//
//	# app.socket
//	[Socket]
//	ListenStream=127.0.0.1:8080
//	FileDescriptorName=http
//
//	[Install]
//	WantedBy=sockets.target
//
//	# app.service
//	[Service]
//	Type=notify
//	NotifyAccess=all
//	ExecStart=/usr/local/bin/app
//	FileDescriptorStoreMax=16
//
// Here Listeners returns {Name: "http", Fd: 3}, whose Addr is "tcp",
// "127.0.0.1:8080", true.
//
// # Platforms
//
// systemd runs on Linux only, and so do these protocols. Elsewhere the
// package compiles and stays quiet when there is nothing to do: NewNotifier
// returns nil without NOTIFY_SOCKET, Listeners returns nothing when no
// descriptors are meant for the process. When there is something to do
// (NOTIFY_SOCKET set, descriptors passed) they return [ErrNotSupported].
package systemd
