// Package server is baton's reference server: an HTTP server that replaces
// itself — new binary, new configuration — without refusing, resetting or
// failing a single request. Read server.go from the top: [Run] is the whole
// life of one generation, in the order a program using baton must do
// things, with the reason for each step. Copy it.
//
// Three programs run this one implementation: examples/httpserver (its
// main is [Main]), "baton demo-server" (and so "baton demo", which drives
// it under load through upgrades) and the soak test in internal/soak.
//
// # Contract
//
// Scripts, service units and tests rely on these flags and this
// behaviour; they do not change:
//
//	-listen ADDR            TCP address to serve HTTP on (127.0.0.1:8080)
//	-pid-file PATH          the serving generation's pid, written atomically
//	                        once it is ready
//	-drain D                how long a retiring generation may drain (30s)
//	-upgrade-timeout D      how long a successor may take to be ready (1m)
//	-control PATH           restart under daemontools, runit or s6 through
//	                        the control socket at PATH
//	-fd-store               keep the listener in systemd's descriptor store
//	-idle-grace D           while draining, close a keep-alive connection
//	                        only after its client has been silent this long
//	                        (500ms); with a successor, idle plaintext
//	                        keep-alive connections are handed to it at once
//	                        instead, and this applies only to the rest
//	                        (TLS, HTTP/2, a failed handover)
//	-probation D            after a successor is ready, keep serving beside
//	                        it for D before draining; if it dies within D,
//	                        serve on, nothing refused, and log why (0: drain
//	                        at once). Both versions answer meanwhile
//	-tls-cert FILE          serve HTTPS with the PEM certificate (chain) in
//	-tls-key FILE           FILE and its PEM private key; both or neither
//	                        (a usage error otherwise). Clients resume their
//	                        TLS sessions with every successor; each
//	                        generation reads both files afresh
//	-max-draining N         let at most N generations drain at once: a
//	                        generation that starts draining and finds more
//	                        stops the oldest at once (SIGRTMIN+6), cutting its
//	                        long connections, and logs how many it held
//	                        (0: no bound). Linux only
//	-close-pace D           while draining, end what cannot be handed over
//	                        (streams, TLS and HTTP/2 idle connections,
//	                        past -idle-grace) one at a time, D apart, so
//	                        their clients come back spread out (0: all as
//	                        the drain begins)
//
//	SIGHUP                  upgrade: start the binary at the same path with
//	                        the same arguments and hand it the socket
//	SIGTERM, SIGINT         drain and stop (under a supervisor, with
//	                        -control, SIGTERM restarts while the supervisor
//	                        wants the service up); to a generation that is
//	                        already draining: ignored, it goes on draining
//	SIGRTMIN+6              to a draining generation: stop at once
//	GET /                   200 "pid=<serving pid> gen=<generation>\n"
//	GET /?delay=2s          the same, after sleeping that long (at most
//	                        MaxDelay)
//	GET /stream             a line "tick pid=<pid> n=<n>" every 100ms until
//	                        the drain asks the stream to end (at its turn
//	                        with -close-pace), then "end pid=<pid> n=<n>"
//	                        and a complete chunked body
//	GET /status             [baton.Upgrader.Status] as JSON: this generation
//	                        and the older ones still running (pid, state,
//	                        age, connections, RSS), upgrades ok and failed
//	                        with the last error, restarts
//
// With -tls-cert and -tls-key the same paths answer over HTTPS (HTTP/1.1
// and HTTP/2). The session ticket keys travel from each generation to the
// next ([baton.Upgrader.TLSSessionTickets]): a client that connects again
// after an upgrade resumes its session, an abbreviated handshake, and the
// keys rotate every [baton.DefaultTicketRotation]. A renewed certificate
// goes live with the next upgrade.
//
// Each generation logs with log/slog to stderr: serving, each upgrade step,
// drained. [Main] returns the exit status: 0 after a drain, 1 if the
// generation could not start, 2 on a usage error.
//
// Under systemd nothing more is needed: baton reads NOTIFY_SOCKET and
// LISTEN_FDS itself (see examples/systemd for the units).
package server
