#!/usr/bin/env python3
"""A socket-activated HTTP server with nothing but the standard library.

It takes its one listening socket from LISTEN_FDS (fd 3, as systemd or
"baton run" pass it), answers GET / with "pid=<pid>", honours ?delay=300ms,
and on SIGTERM stops accepting, answers what is in flight with
"Connection: close" and exits once every connection is done.
"""
import http.server
import os
import signal
import sys
import threading
import time
from urllib.parse import parse_qs, urlparse

if os.environ.get("LISTEN_PID") != str(os.getpid()) or os.environ.get("LISTEN_FDS") != "1":
    sys.exit("pyworker: no socket in LISTEN_FDS for this pid")

import socket

sock = socket.socket(fileno=3)
draining = threading.Event()


def seconds(d):
    for suffix, scale in (("ms", 1e-3), ("us", 1e-6), ("s", 1.0)):
        if d.endswith(suffix):
            return float(d[: -len(suffix)]) * scale
    return float(d)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # An idle keep-alive connection is closed after this long; under load
    # none is idle that long.
    timeout = 5

    def do_GET(self):
        q = parse_qs(urlparse(self.path).query)
        if "delay" in q:
            time.sleep(seconds(q["delay"][0]))
        body = ("pid=%d\n" % os.getpid()).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if draining.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = False  # server_close waits for the requests in flight


srv = Server(sock.getsockname(), Handler, bind_and_activate=False)
srv.socket.close()
srv.socket = sock


def stop(signum, frame):
    draining.set()
    threading.Thread(target=srv.shutdown).start()


signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGINT, stop)
print("pyworker: serving", sock.getsockname(), file=sys.stderr, flush=True)
srv.serve_forever(poll_interval=0.05)
# Close our copy of the socket only: the master and the next generation
# keep it; then wait for the connections in flight.
srv.server_close()
print("pyworker: drained", file=sys.stderr, flush=True)
