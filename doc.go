// Package baton lets a network server replace itself — new binary, new
// config — without refusing, resetting or dropping a single connection.
//
// Every restart is a handoff between two generations of one service. The
// incumbent holds the listening sockets and serves. Upgrade starts a
// successor and hands it the very same sockets (never a re-bind: with
// SO_REUSEPORT each socket has its own accept queue, and whatever waits in
// the old one is reset when it closes). The successor takes them with the
// same Listen calls the first generation used, initialises, and calls
// Ready. Only then is the incumbent's Exit channel closed: it stops
// accepting, drains in-flight work (see package httpdrain) and exits. If
// the successor exits, crashes, hangs past Options.UpgradeTimeout or
// speaks the protocol wrong, it is killed and reaped, Upgrade returns a
// *ChildError saying why, and the incumbent serves on as if nothing had
// happened.
//
// # Use
//
//	upg, err := baton.New(baton.Options{PIDFile: "/run/app.pid"})
//	if err != nil { ... }          // a malformed handoff: exit, the incumbent serves on
//	defer upg.Stop()
//	ln, err := upg.Listen("tcp", ":8080") // inherited, or new on first start
//	srv := httpdrain.New(&http.Server{Handler: h}, httpdrain.Options{})
//	upg.HandleSignals()            // SIGHUP upgrades, SIGTERM and SIGINT stop
//	go srv.Serve(ln)
//	if err := upg.Ready(); err != nil { ... }
//	<-upg.Exit()                   // a successor is ready, or Stop was called
//	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
//	defer cancel()
//	srv.Drain(ctx)
//
// A listener asked for on port 0 is found again in the successor by the
// same request or by its real port. Anything else — a connection, a packet
// socket, a file — is passed on by name with Add and taken back with File,
// Conn, Listener or PacketConn.
//
// # The handoff protocol
//
// The incumbent creates a Unix stream socketpair and starts the successor
// with one end as descriptor 3 and BATON_HANDOFF=3:<incumbent pid> in its
// environment. New reads the variable, removes it from the environment (so
// nothing the successor starts inherits it) and ignores it unless the pid
// is its parent's or, for a successor started as its sibling
// (CLONE_PARENT), the socket's creator (SO_PEERCRED). Over the control
// socket (Options.Control) the new instance connects and opens with
// takeover 'T' {its pid u32, which must be the connecting process's};
// the rest is the same. Then, in frames of a 1-byte type, a 4-byte big-endian
// length and a binary body of at most 1 MiB:
//
//	incumbent → successor   hello  'H'
//	incumbent → successor   fds    'F'  with at most 128 descriptors as
//	                                    SCM_RIGHTS on the frame's first byte,
//	                                    until all are sent
//	incumbent → successor   state  'V'  the named state blobs (SetState)
//	successor → incumbent   ready  'R'  with exactly one descriptor:
//	                                    the relay socket (below)
//	                   or   abort  'X'
//	incumbent → successor   ack    'A'  the successor serves; without a
//	                                    probation the incumbent has
//	                                    committed and drains
//
// and then, for as long as both live, the generation link:
//
//	incumbent → successor   passed     'P'  once, after an ack with a
//	                                        probation: it passed, the
//	                                        incumbent drains
//	successor → incumbent   serving    'S'  once
//	incumbent → successor   conn       'C'  one established connection,
//	                                        exactly one descriptor attached
//	successor → incumbent   connAck    'K'  it is the successor's now
//	                   or   connRefuse 'N'  it is still the incumbent's
//	incumbent → successor   relay      'L'  at most once, as the incumbent
//	                                        stops: empty, with exactly one
//	                                        descriptor, its relay socket to
//	                                        its own predecessor
//
// Integers are unsigned and big-endian; a string is a u16 length and that
// many bytes; a blob is a u32 length and that many bytes. The bodies:
//
//	hello   version u16 (4), generation u32 (≥ 1), incumbent pid u32,
//	        number of descriptors to follow u32 (at most 1<<20)
//	fds     count u16 (1 to 128, the descriptors attached), then per
//	        descriptor: kind u8 (1 listener, 2 packet, 3 conn, 4 file),
//	        name (≤ 255 bytes), network (≤ 16), address asked for (≤ 4096),
//	        actual address (≤ 4096); an empty string is an absent field
//	state   count u16 (at most 1024), then per blob its name (a string,
//	        1 to 255 bytes, no ':' or NUL) and its value (a blob); names
//	        strictly ascending, values together at most MaxState (512 KiB)
//	ready   successor pid u32
//	abort   the reason, the whole body: UTF-8, at most 4096 bytes
//	ack     probation u32: the successor's probation in milliseconds,
//	        0 for none (Options.Probation, rounded up)
//	passed  empty: only after an ack with a probation, at most once, and
//	        before any conn
//	serving empty: sent by the successor after the ack (after passed, on
//	        probation), once its PID file and control socket name it (an
//	        incumbent that upgrades in place waits for it; any other
//	        ignores it)
//	conn    id u32 (≥ 1, unique among those in flight), name (a string, as
//	        a state name), state (a blob of at most MaxConnState, 64 KiB)
//	connAck id u32
//	connRefuse  id u32, then the reason: the rest of the body, as abort's
//
// Parsing is strict: every body must have exactly its layout, with no
// trailing bytes; a string or blob longer than its limit or than what is
// left, a kind code other than these, a file without a name, a name used
// twice (in one frame or across frames), a network that does not suit the
// kind, state names out of order, an id 0 are all errors. Only reasons
// (abort, connRefuse) are taken as they come: cut to 4096 bytes between
// characters, invalid UTF-8 replaced. The version leads the hello so that
// any later layout is told apart from this one: version 2 added the state
// frame and the link, version 3 the ack's probation and the passed frame,
// version 4 the relay socket on the ready frame, and an incumbent or
// successor of an earlier version is refused at the hello with an error
// naming both versions (the successor aborts; the incumbent
// reports the abort and serves on). A passed frame without a probation, a
// second one, or a conn during the probation breaks the protocol.
//
// The receiver reads exactly one frame at a time, so descriptors never
// arrive with the wrong frame; it receives them close-on-exec, treats
// MSG_CTRUNC as an error, and closes everything it received on any error.
// Whatever is malformed — a bad header, an oversized body, a count that
// does not match the descriptors, an unknown version — is a *ProtocolError:
// the successor aborts with the reason, the incumbent kills it and reports
// it. EOF on the socket means the other side is gone: the successor's
// WaitForParent returns when the incumbent has exited.
//
// # The generation link
//
// The handoff socket outlives readiness: over it the draining generation
// passes established connections, each with an opaque state blob, to its
// successor. The successor asks for them by name before Ready:
//
//	ws, err := upg.Handed("ws") // before Ready
//	go serveHanded(ws)           // each Accept is a *baton.HandedConn
//
// and the old generation, once Exit is closed, hands over each connection
// when it stands at a boundary of its protocol (no request half read):
//
//	err := upg.HandOver(ctx, "ws", conn, state)
//	// nil: the successor has it, conn is closed here;
//	// error: conn is still ours — serve it on, or close it gracefully.
//
// At every instant exactly one generation owns a connection. It is the
// old generation's until the successor acknowledges it, and the
// successor acknowledges only once the connection waits in its Handed
// listener's queue; the old generation closes its descriptor only on
// that acknowledgement. Every failure leaves the connection with the old
// generation, which HandOver's error tells: the successor refused it
// (ErrHandOverRefused: nobody asked for that name, the listener is
// closed or its queue of 64 is full, the descriptor did not fit —
// MSG_CTRUNC, its RLIMIT_NOFILE reached), or it died or broke the link
// before its answer (ErrNoSuccessor: the stream keeps order, so an ack
// sent before it died is read before the end). The successor's
// descriptor of a refused connection is closed; its own end of the TCP
// connection is unaffected, since the old generation still holds it.
//
// Once the conn frame is on the wire, HandOver waits for the answer or
// the end of the link, whatever its ctx says: an early return could make
// both generations, or neither, think the connection theirs. The
// successor answers at once, and its end of the link closes when it
// exits, so the wait lasts no longer than the successor lives; one that
// is stopped (SIGSTOP) holds HandOver until it runs again or dies. ctx
// bounds the rest: the wait for one of 64 slots (the connections in
// flight at once) and the sending itself. A send that fails before its
// first byte leaves nothing in flight; one cut in the middle shuts the
// link for writing, so the successor reads a truncated frame, which it
// can never acknowledge, and closes what it received. A successor that
// breaks the protocol is treated as gone.
//
// State travels in the handoff itself: SetState sets named blobs (at
// most 512 KiB together), the successor reads them with PredecessorState
// right after New. Names starting with "baton." are the library's own.
// Each generation sets its own for the next. TLSSessionTickets is the
// library's own use of it: one call makes a *tls.Config's session ticket
// keys travel with the generation, rotated, so that clients resume their
// TLS sessions with every successor (an abbreviated handshake).
//
// httpdrain uses the link by itself (httpdrain.Options.Handoff): during a
// drain, an idle plaintext HTTP/1 keep-alive connection is handed to the
// successor once a read is shown to have consumed nothing of its next
// request, and the old generation exits as soon as its requests in flight
// are answered.
//
// # Relayed datagrams
//
// A protocol that keeps its connections in user space over a shared UDP
// socket — QUIC — needs more than the socket: once the successor serves,
// the draining generation stops reading the socket (or it would take the
// successor's datagrams), and a datagram of one of its connections must
// reach it from whichever generation read it. Each generation's ready
// frame passes its predecessor one end of a relay socket, a Unix
// socketpair that keeps message boundaries (SOCK_SEQPACKET on Linux,
// SOCK_DGRAM on macOS), and the two relay over it for as long as both
// live, a probation included:
//
//	err := upg.RelayPacket("quic", gen, from, datagram) // to generation gen
//	q, err := upg.RelayedPackets("quic")                // relayed to us
//
// The application says which generation a datagram belongs to (package
// quicroute reads it from the QUIC connection ID, which names the
// generation that issued it). A datagram for a generation further away
// travels from neighbour to neighbour, each hop strictly toward it; a
// generation drops one that came from the wrong side, so none loops.
// Nothing waits on the way: a datagram that finds a relay socket full, no
// neighbour in its direction (its generation is gone), or its queue (1024)
// full or never asked for, is dropped and counted (RelayStats), as the
// network drops one. Each relay message is one datagram:
//
//	generation u32 (≥ 1), channel (u8 length, 1 to 255 bytes, a name as
//	a state name), address family u8 (4 or 6), address (4 or 16 bytes),
//	port u16, then the datagram itself (1 to MaxRelayedPacket bytes)
//
// parsed as strictly as the frames. A generation that stops (Stop) after
// it handed over passes its relay socket to its predecessor on to its
// successor (the relay frame), so the generations on either side of it
// relay to each other directly: a middle generation that finishes its
// drain first does not cut the older ones off. One that dies without
// Stop does: datagrams for the generations beyond it are dropped and
// counted from then on, and their connections end as the network would
// end them.
//
// The link works in all three topologies that have one: Upgrade's child,
// the interim generation of a supervised restart, and a new instance that
// took over through the control socket. Workers under "baton run" (any
// language, behind the master) have no link: a connection cannot cross
// from one of them to the next.
//
// # Probation
//
// With Options.Probation the old generation does not drain as soon as its
// successor is ready: both serve, accepting from the same sockets, for
// the window, and only then is the old one's Exit closed (and only then
// does it hand connections over). If the successor dies inside the
// window — it exits, is killed, breaks the link — the old generation
// simply serves on: the sockets never stopped being accepted from, so no
// connection is refused; only what the dying successor had accepted dies
// with it. Upgrade, which returns only when the window has passed or the
// successor failed, then returns a *ChildError matching
// ErrProbationFailed, whose *ProbationError says how long after its
// ready it died and how (exit status or signal, when it was our child);
// the failure is logged at error level, and under systemd STATUS= says
// it and READY=1 is sent again.
//
// Nothing names a successor before its probation passed, so a failure
// needs nothing restored: the PID file, the control socket, systemd's
// MAINPID (with READY=1, which ends a "systemctl reload" of a
// Type=notify-reload unit) and s6's readiness notification all still
// name the old generation. The successor knows it is on probation from
// the ack: its Ready returns there and it serves, but it names itself
// only when the passed frame comes, or when the old generation is gone
// (EOF: nobody else serves), and says serving then. The old generation
// tells systemd (MAINPID, READY=1) only once it heard serving, so when
// "systemctl reload" returns the PID file names the successor; one that
// dies in between leaves the old generation serving, named again. Meanwhile its
// Upgrade returns ErrOnProbation; a SIGHUP (HandleSignals) is carried
// out once the probation passed. Stop during the window (SIGTERM to the
// old generation) ends it early as passed, unless the successor is
// already dead. The handover to a supervised restart's interim
// generation has none (it runs the code that serves now); the new
// instance that takes over from it is on probation like any successor,
// and if it dies the interim generation serves on until the
// supervisor's next one takes over.
//
// The price of the window: two generations serve, so two versions of the
// code answer and a request may reach either, and the service holds the
// memory of both until the old one drains. A successor whose old
// generation says nothing for the window plus UpgradeTimeout (stopped,
// wedged) names itself then.
//
// # Bounded generations and paced closes
//
// When upgrades come faster than long connections end, draining
// generations pile up. Options.MaxDraining bounds them: each generation
// passes its successor the generations still running (generation, pid and
// process start time, in the reserved state "baton.generations"), and one
// that starts draining and finds more than MaxDraining draining, itself
// included, sends HurrySignal (through a pidfd, after checking the start
// time, so a reused pid is never signalled) to the oldest beyond the
// bound, logging how many connections each held. HandleSignals turns
// HurrySignal (SIGRTMIN+6) into Hurry, and the application cancels its
// drain. Not SIGTERM: a service manager's stop sends SIGTERM to every
// process of the service, and a draining generation must then finish its
// requests, not cut them. Linux only; elsewhere the bound is ignored with
// a warning.
//
// What cannot be handed over (TLS and HTTP/2 connections, hijacked ones,
// long responses) need not all close at the drain deadline, which makes
// every client reconnect at once: httpdrain's Options.ClosePace ends them
// one at a time, gracefully where the protocol allows (a response that
// ends, "Connection: close", a hijacked connection's own end function).
//
// # Invariants
//
//   - At most one upgrade runs at a time; a concurrent Upgrade returns
//     ErrUpgradeInProgress, and Upgrade before Ready returns ErrNotReady.
//   - The incumbent is told to drain only after the successor is ready,
//     and with a probation only once the successor has lived through it.
//   - Shared sockets stay non-blocking: descriptors are reached through
//     SyscallConn, never through (*os.File).Fd, which would switch the
//     shared open file description to blocking mode for every process
//     holding it. Nothing ever calls shutdown(2) on a passed socket.
//   - A socket costs one descriptor per process. The Upgrader passes on
//     the descriptor of the application's own listener or packet socket
//     and keeps no copy of it, holding it open (RawConn.Control) only
//     while its batch is sent; so 10,000 sockets fit where the descriptor
//     limit is 20,000. Closing such a listener closes the socket and takes
//     it out of later upgrades; closing it while an upgrade sends it fails
//     that upgrade (the incumbent serves on). Inherited sockets nobody
//     claimed yet, and connections and files given to Add, are held by
//     the Upgrader itself.
//   - Unix socket files survive handoffs (unlink-on-close is off) and are
//     removed only by the final Stop of a generation that handed over to
//     nobody. The PID file likewise.
//   - The PID file is written atomically (a temporary file renamed over
//     it). The successor checks its directory in New, before it can
//     accept a connection, and prepares it before it says ready — an
//     unwritable directory fails the successor, not the service — and
//     renames it in once the incumbent has acknowledged (on probation,
//     once told it passed): the file always names a live, ready
//     generation.
//   - A failed successor is killed and reaped; a successful one is reaped
//     by the incumbent if it ever exits while the incumbent still runs.
//
// # Which binary the successor runs
//
// See Options.Executable: os.Args[0], resolved against the working
// directory the process started in (or looked up in PATH), symlinks not
// resolved — so a "current -> releases/N" layout runs the release current
// points at when Upgrade is called — and, if that file is gone (as with
// "go run"), the running binary. The file is checked before anything
// starts. The successor gets the same arguments, the initial working
// directory, and the environment minus baton's private variables.
//
// # Under systemd
//
// Nothing to write: when systemd started the service (NOTIFY_SOCKET), the
// Upgrader sends READY=1 on the first Ready and, on each upgrade,
// RELOADING=1, then — once the successor is ready and before the incumbent
// drains — MAINPID=<successor> with READY=1 and a barrier, so systemd
// follows the new main process before the old one can exit (with a
// probation, once it passed); after a failed upgrade, READY=1 again with
// a STATUS= that says why; STOPPING=1 on the final stop. The successor is started with CLONE_PARENT, as a child
// of systemd: systemd 252 stops a main process it did not fork with
// SIGTERM and SIGKILL back to back, but drains its own children
// gracefully. So Type=notify (or Type=notify-reload, systemd 253 and
// later) with the default NotifyAccess=main just works:
//
//	[Service]
//	Type=notify
//	ExecStart=/usr/local/bin/app
//	ExecReload=/bin/kill -HUP $MAINPID
//
// A first generation adopts the sockets systemd passes (LISTEN_FDS: socket
// activation, or the file descriptor store): Listen returns the one bound
// to the address asked for (":8080" finds a wildcard socket on port
// 8080), and Listener, PacketConn or File the one with that unique
// FileDescriptorName=. With Options.FDStore every listener is pushed into
// the store, so even a plain restart or a crash refuses no connection.
// PIDFile= works too (Options.PIDFile), if preferred.
//
// # Under daemontools, runit and s6
//
// A supervisor restarts a service by signalling it and running ./run again
// once it has exited, and tracks one pid. Options.Control gives such a
// service zero-downtime restarts with nothing but "exec app -control PATH"
// in its run script: on SIGTERM while the supervisor still wants it up
// (svc -t, sv restart, s6-svc -r), the serving instance hands its sockets
// to an interim generation and exits; the new instance ./run starts takes
// them over from that one through the control socket, says ready, and only
// then does the interim generation drain. A stop (svc -d, sv stop,
// s6-svc -d) drains and exits; the interim generation, untracked by the
// supervisor, stops as soon as it sees the service wanted down, or when
// no instance came to take over within UpgradeTimeout. See Options.Control.
//
// SIGHUP (svc -h, sv hup, s6-svc -h) upgrades in place, keeping the pid
// the supervisor tracks. The process hands its sockets to an interim
// generation and closes Exit like after any upgrade; ExecRequested then
// reports true, and the application, once drained, calls Exec instead of
// exiting. Replacing the process image is that explicit step, never a side
// effect of Stop: deferred calls must still run, and a reader of
// "defer upg.Stop()" should not have to expect an exec:
//
//	<-upg.Exit()
//	srv.Drain(ctx)
//	if upg.ExecRequested() {
//		err := upg.Exec() // returns only if it could not re-execute
//		log.Fatal(err)    // the supervisor starts the next instance
//	}
//
// # Platforms
//
// Linux and macOS. Elsewhere the package compiles and New returns
// ErrNotSupported.
package baton
