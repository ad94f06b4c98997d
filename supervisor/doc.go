// Package supervisor is baton's master mode: a small, long-lived process
// that opens the listening sockets once and runs a program as generation
// after generation of workers, handing every one the very same sockets, so
// that any server — in any language — is reloaded without refusing,
// resetting or dropping a connection. "baton run" is its command line.
//
//	m, err := supervisor.New(supervisor.Config{
//		Program: "/usr/local/bin/app",
//		Listen:  []supervisor.ListenSpec{{Name: "web", Network: "tcp", Address: ":8080"}},
//	})
//	if err != nil { ... }
//	m.HandleSignals() // SIGHUP reloads, SIGINT/SIGTERM stop, USR1/USR2/WINCH are forwarded
//	err = m.Run(ctx)  // until stopped; an *ExitError carries the worker's status
//
// # How a worker gets the sockets
//
// Exactly as from systemd socket activation: descriptors 3 and up,
// LISTEN_FDS, LISTEN_FDNAMES (a socket's name, or "unknown"), and a
// LISTEN_PID that really is the worker's pid. The master cannot know that
// pid before it forks, and os/exec cannot set the environment after, so
// the master starts a trampoline — its own binary (Config.Trampoline, by
// default /proc/self/exe) with the hidden first argument WorkerCommand — which sets
// LISTEN_PID to its pid and execs the program: exec keeps the pid. A
// program built with this package must call ExecWorker for that argument
// (cmd/baton does). So any socket-activated server works unchanged, and a
// Go program using package baton finds the sockets with the same Listen
// calls it always makes. Sockets are passed with syscall.StartProcess,
// never through an *os.File (Fd would make a shared socket blocking for
// every holder); the master never shuts one down and never re-binds.
//
// # Readiness
//
// Config.Ready "notify" (the default): each generation gets a private
// NOTIFY_SOCKET, a datagram socket in the master's owner-only runtime
// directory, read with SO_PASSCRED; READY=1 counts only when the kernel
// says it comes from the worker's pid. Descriptors sent along (a
// BARRIER=1 pipe, FDSTORE=1) are closed. A Go worker using package baton
// sends READY=1 on its own: under the master every worker is a first
// start.
//
// "tcp" and an http:// URL probe the first TCP listener — but a connect
// on a shared socket proves nothing: the kernel completes the handshake
// before anyone accepts, and the old generation accepts too. So the probe
// asks the kernel (sock_diag, an exact lookup of one socket) for the inode
// of the server side of its connection once someone has accepted it, and
// looks for that inode among the descriptors of the new worker and its
// descendants. A connection the old generation took is closed (it sees a
// client that said nothing) and another tried. The http probe then sends
// its GET on the connection the new worker accepted and wants 200.
//
// # Reload
//
// Reload (SIGHUP, "baton reload") starts the next generation and waits,
// at most Config.UpgradeTimeout, until it is ready; only then is the old
// one sent Config.StopSignal, and SIGKILL after Config.DrainTimeout
// (logged with the number of connections it still held, and counted in
// Status.DrainKills). At most one reload runs at a time: a reload asked
// through Reload or the control socket while another runs is refused at
// once with ErrReloadInProgress, so that its caller knows its reload did
// not happen; SIGHUPs during a reload are not refused but remembered, and
// one more reload follows it — the signal may announce a change the
// running reload started too early to see. A generation that
// cannot be started (the program is missing or not executable), exits or
// is not ready in time is killed and reaped, and Reload returns a
// *GenerationError with the reason and its last StderrLines lines of
// stderr: the master reads every worker's stderr through a pipe, passing
// it on to its own and keeping the tail. The serving generation serves on.
//
// # Probation
//
// With Config.Probation, a new generation that is ready does not replace
// the old one at once: both accept from the shared sockets for that long,
// and only then is the old one told to stop. If the new one dies within
// the window, the old one, which never stopped, serves on: no connection
// is refused, only what the dying one had accepted is lost, and the
// reload fails with a *GenerationError that says "died N ms into
// probation" and the exit status. The reload (Reload, "baton reload",
// systemd's RELOADING=1 under a NOTIFY_SOCKET) ends only with the window,
// so a reload asked meanwhile is refused with ErrReloadInProgress and a
// SIGHUP makes one more. The cost: two generations serve, and hold
// memory, for the window. The first generation and the restart of a
// crashed one have no probation: nothing is beside them to fall back on.
//
// # Bounded generations
//
// Generations that hold long-lived connections (WebSockets, streams) may
// drain for up to Config.DrainTimeout; reloads faster than that pile them
// up. Config.MaxDraining bounds them: when one more starts to drain, the
// oldest draining ones beyond the bound are killed at once (SIGKILL),
// each logged with its generation, pid, how long it drained and the
// established connections it held (Status.LimitKills counts them). So at
// most MaxDraining+1 workers run between reloads and MaxDraining+2
// during one (one starting, or on probation). 0, the default, is
// unbounded: a kill drops connections, a choice for the operator.
//
// # Status and metrics
//
// Status gives, per generation, its pid, state, age, established TCP
// connections on the master's listeners' ports (sock_diag, filtered by
// the inodes among its descriptors in /proc) and resident memory
// (VmRSS); and for the service the reloads that succeeded and failed
// (with the last error and its time), the restarts, the generations
// killed, and the drains (count, sum, last, and a histogram over
// DrainBuckets). The run loop answers with what it owns; the reads of
// /proc happen in the caller's goroutine, never on the loop.
//
// Config.Metrics serves the same as Prometheus metrics (GET /metrics, the
// text exposition format 0.0.4, written by WriteMetrics without a
// dependency): baton_upgrades_total{result}, baton_restarts_total,
// baton_generation_kills_total{reason}, the histogram
// baton_drain_duration_seconds, and per generation (labels generation
// and pid) baton_generation_info{state}, _start_time_seconds,
// _age_seconds, _connections and _resident_memory_bytes. ":PORT" is
// 127.0.0.1:PORT; a host that is not loopback is served, and logged. A
// scrape waits at most 2s for the run loop, and answers 503 otherwise.
//
// # Control socket
//
// Config.Control (by default DefaultControlPath) is a Unix stream socket
// in a directory only the owner may enter (created 0700, refused
// otherwise). Something already at its path is replaced only if it is a
// socket no one answers on (a master that was killed left it); a socket
// that answers, a regular file, a symbolic link (never followed) or a
// directory make New fail with an error naming the path, and are left
// alone. On a stop the socket file is removed only if it is still the
// master's own. The socket is 0600 and a peer whose SO_PEERCRED uid is not
// the master's is disconnected without a word (Call returns ErrRefused).
// One request per connection, as a line of JSON of at most 4 KiB, one
// response line of at most 1 MiB:
//
//	→ {"cmd":"reload"}      ← {"ok":true,"result":{"generation":2,"old_pid":..,"new_pid":..,"duration_ns":..}}
//	→ {"cmd":"status"}      ← {"ok":true,"status":{"pid":..,"state":"serving","generations":[..]}}
//	→ {"cmd":"stop"}        ← {"ok":true}, once everything has exited
//	→ {"cmd":"exec-master"} ← {"ok":true,"status":{..}}, from the new image
//
// A failed command answers "ok":false with a "code" to branch on and an
// "error" for people:
//
//	← {"ok":false,"code":"reload_in_progress","error":"supervisor: a reload is already in progress"}
//
// The codes are reload_in_progress, stopped, not_serving,
// generation_failed, bad_request and failed (see Code); Response.Err
// turns one back into an error that errors.Is matches against
// ErrReloadInProgress, ErrStopped or ErrNotServing. A failed reload also
// carries the Result, whose "error" says the same and whose "stderr"
// holds the new generation's last lines. The master's parser of requests
// is strict (one object, a known command, no other field) and fuzzed, as
// is the client's of responses; Call never retries.
//
// # Errors and states
//
// A caller branches on types, never on text: ErrReloadInProgress,
// ErrStopped, ErrNotServing, ErrRefused (from Call) and ErrNotSupported
// with errors.Is; from New, ErrControlInUse (something answers on the
// control socket), syscall.EADDRINUSE (an address is held by another
// process) and a *ConfigError (a Config it cannot use); from ParseListen a
// *ListenError; from Reload a *GenerationError; from Run a
// *GenerationError or an *ExitError. The states in Status are of type
// State: starting, serving, reloading, restarting, stopping, stopped for
// the master; starting, serving, draining, stopping, failed for a
// generation. Their JSON is their text.
//
// # Inside
//
// One goroutine, the run loop in Run, owns the master's state; the
// reaper, the notify readers, the probes, the timers, the control
// connections and the public methods send it typed events. It never
// blocks: the wait for a finished worker's last stderr lines and the
// trial run of the master's new binary happen in goroutines of their own,
// which report back with an event.
//
// # PID 1 and reaping
//
// The master becomes a child subreaper (PR_SET_CHILD_SUBREAPER) unless it
// is PID 1 already, so whatever a worker leaves behind (a double fork) is
// reparented to it. One goroutine waits for every child (wait4(-1) on
// SIGCHLD); the workers' exits go to the run loop, the orphans' are
// counted. Nothing else waits, so no worker's status is ever stolen —
// which is why workers are started with syscall.StartProcess and not
// os/exec. On stop, the pending generation is killed, every other told to
// drain, and once they have exited, what is left of their descendants is
// sent SIGTERM, then SIGKILL. Run returns nil when the last serving
// worker exited 0, else an *ExitError whose Code (the exit code, or
// 128+signal) "baton run" exits with.
//
// # A worker that crashes
//
// A serving worker that exits by itself with a failure (a status other
// than 0, or a signal the master did not send) is restarted: the master
// starts a new generation of the same command after a backoff — 100ms
// after the first failure within Config.RestartWindow, doubling with each
// further one up to 5s — and logs the exit status. The master still holds
// every socket, so no connection is refused meanwhile: they wait in the
// accept queue for the new generation. What the crashed worker had
// accepted is lost with it. If a reload was starting a generation when
// the serving one crashed, that generation takes over instead. A
// restart that fails (exits, is not ready in time, cannot start) is one
// more failure, and is retried the same way; a reload asked meanwhile
// starts a generation at once. More than Config.RestartLimit failures
// within Config.RestartWindow (default 5 within a minute, like systemd's
// StartLimitBurst), and the master gives up: it stops, and Run returns
// the *ExitError of the last worker that exited. RestartNever (-1) in
// Config.RestartLimit means never restart: the first failure stops the
// master. 0 is the default, as for every Config field; "baton run
// --restart-limit" takes the same -1, and refuses 0. The status says
// "restarting" while no generation serves, and counts the restarts. A
// worker that exits 0 by itself ends the service on purpose: the master
// stops and Run returns nil.
//
// # If the master is killed
//
// The workers are not: SIGKILL gives the master no chance, and there is
// no reliable way to make a worker die with it (PR_SET_PDEATHSIG follows
// the thread that forked, not the process). They keep serving on their
// own copies of the sockets, orphaned to init or the nearest subreaper;
// with the master gone nobody reads their standard error, so a worker
// that writes to it gets EPIPE, or dies of SIGPIPE (Go programs do for
// descriptors 1 and 2). A master restarted while they run cannot bind
// the address they hold and exits with status 3 ("address already in
// use"); under systemd the unit's leftover processes are killed before
// a restart (KillMode), and the new master starts cleanly: a control
// socket no one answers on, and the notify sockets, left by the killed
// master are replaced.
//
// # Upgrading the master itself
//
// ExecMaster ("baton reload --master", the control command exec-master)
// execs Config.Executable — os.Args[0] as resolved at start, symlinks
// kept — in place: the pid stays (systemd's MainPID, a container's PID 1,
// the workers' parent), and so do the sockets, the control socket and
// every generation, serving or draining. The state crosses the exec in
// the environment variable BATON_MASTER_STATE (removed at once) and as
// descriptors left open: the sockets, the control socket, the connection
// that asked (the new image answers it, with its status), and each
// generation's stderr pipe and notify socket. The reaper is stopped
// first and the exits it had taken are handled, so no worker's exit is
// lost; the new image adopts the workers before it reaps again. It is
// refused during a reload or a stop, and when the new binary does not
// pass a trial run; the master then goes on unchanged.
//
// # Under systemd
//
// With NOTIFY_SOCKET in its environment the master, the stable main
// process, says READY=1 once the first worker is ready, RELOADING=1 and
// READY=1 around each reload, STOPPING=1, and STATUS= lines. Workers get
// the master's private NOTIFY_SOCKET instead, never systemd's, and
// sockets from systemd's socket activation are adopted and passed on:
//
//	[Service]
//	Type=notify
//	ExecStart=/usr/local/bin/baton run --listen tcp://:8080 -- /usr/local/bin/app
//	ExecReload=/usr/local/bin/baton reload
//	KillMode=mixed
//
// # Pitfalls
//
//   - A worker that uses package baton and is stopped by the master drains
//     as a final generation: for a unix socket it would unlink the socket
//     file the master still serves. Use TCP with such workers, or a worker
//     that leaves the file alone.
//   - A worker that exits 0 by itself stops the master; one that crashes
//     is restarted, but what it had accepted is lost (see above).
//   - Signals other than SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2 and
//     SIGWINCH are not forwarded (SIGQUIT keeps Go's goroutine dump of the
//     master itself).
//   - ExecMaster trusts the new binary to be a compatible baton: it checks
//     that it runs (a trial trampoline for /bin/true must exit 0), not
//     that it understands the state it is handed. A new image that fails
//     to adopt it exits, and the workers are orphaned to init.
//
// # Platforms
//
// Linux only (child subreaper, SCM_CREDENTIALS, sock_diag, /proc).
// Elsewhere the package compiles and New returns ErrNotSupported.
package supervisor
