#!/usr/bin/env python3
"""A Python HTTP server run by prefork as an exec release, with the standard library only.

prefork hands it the listen sockets the systemd way (fds 3, 4, ..., LISTEN_FDS, LISTEN_PID)
and a NOTIFY_SOCKET to send READY=1 on once it serves. On SIGTERM (prefork's default
stopSignal) it stops accepting, lets the requests in flight finish, and exits. Each response
closes its connection (HTTP/1.0 style), so there are no idle kept-alive connections to race.

In prefork.json: "command": ["./server.py"] (executable), or ["python3", "server.py"].
"""
import json
import os
import signal
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RELEASE = os.path.basename(os.getcwd())  # prefork runs each worker in its release directory


def listen_sockets():
    """The sockets prefork (or systemd) passed: fds 3 .. 3 + LISTEN_FDS - 1."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return []
    count = int(os.environ.get("LISTEN_FDS", "0"))
    return [socket.socket(fileno=fd) for fd in range(3, 3 + count)]


def notify(state):
    """Sends one sd_notify message ("READY=1", "WATCHDOG=1", "STATUS=...")."""
    path = os.environ.get("NOTIFY_SOCKET")
    if not path:
        return
    if path.startswith("@"):
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(state.encode(), path)


def watchdog(stop):
    """Sends WATCHDOG=1 at half the interval prefork asked for (WATCHDOG_USEC), if any."""
    usec = int(os.environ.get("WATCHDOG_USEC", "0"))
    while usec > 0 and not stop.wait(usec / 2e6):
        notify("WATCHDOG=1")


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path == "/health":
            body = b"ok\n"
            kind = "text/plain"
        else:
            body = json.dumps({"release": RELEASE, "pid": os.getpid(), "lang": "python"}).encode()
            kind = "application/json"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format, *args):
        pass  # no access log: prefork logs this worker's output as its own lines


class Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() waits for the requests in flight


def main():
    sockets = listen_sockets()
    if not sockets:
        sys.exit("no listen sockets: run me under prefork (or systemd socket activation)")
    # SIGTERM (prefork's stopSignal) and SIGINT are taken by sigwait() below, in this thread.
    # Blocked here, before any thread starts, so that no other thread receives them: Python
    # runs a signal handler only in the main thread, and only once that thread runs Python
    # code again, which a thread blocked in a wait does not.
    stop_signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
    servers = []
    for sock in sockets:
        server = Server(sock.getsockname(), Handler, bind_and_activate=False)
        server.socket.close()
        server.socket = sock
        servers.append(server)
        threading.Thread(target=server.serve_forever, daemon=True).start()

    stop = threading.Event()
    threading.Thread(target=watchdog, args=(stop,), daemon=True).start()
    notify("READY=1")
    notify("STATUS=serving " + RELEASE)
    print(f"{RELEASE} serving on {len(sockets)} socket(s)", flush=True)

    signal.sigwait(stop_signals)
    stop.set()
    notify("STOPPING=1")
    for server in servers:
        server.shutdown()  # stop accepting: the other workers accept on the same sockets
        server.server_close()  # wait for the requests in flight
    print(f"{RELEASE} drained", flush=True)


if __name__ == "__main__":
    main()
