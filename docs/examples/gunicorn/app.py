"""A WSGI app served by Gunicorn (Debian's gunicorn, 20.1) as a prefork exec release.

Gunicorn speaks systemd's protocol itself: its arbiter serves the sockets in LISTEN_FDS
(ignoring --bind) and sends READY=1 on NOTIFY_SOCKET once booted, and SIGTERM (prefork's
default stopSignal) is its graceful stop. See prefork.json for the settings that lose no
request across a deploy, and docs/exec-releases.md for why.
"""
import json
import os

RELEASE = os.path.basename(os.getcwd())  # prefork runs each worker in its release directory


def app(environ, start_response):
    if environ["PATH_INFO"] == "/health":
        start_response("200 OK", [("content-type", "text/plain")])
        return [b"ok\n"]
    body = json.dumps({"release": RELEASE, "pid": os.getpid(), "lang": "gunicorn"}).encode()
    start_response("200 OK", [("content-type", "application/json"), ("content-length", str(len(body)))])
    return [body]
