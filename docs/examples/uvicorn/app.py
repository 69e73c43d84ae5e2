"""An ASGI app served by Uvicorn (Debian's python3-uvicorn, 0.17) as a prefork exec release.

Uvicorn runs as Gunicorn's worker class (uvicorn.workers.UvicornWorker), as Uvicorn's own
documentation advises for production: Gunicorn takes the sockets from LISTEN_FDS and sends
READY=1. (`uvicorn --fd 3` also serves prefork's socket, but takes it for a Unix socket, so
its connections go without TCP_NODELAY and kept-alive requests wait on delayed ACKs.)

On SIGTERM Uvicorn closes every connection that has no request in progress at once, which
races a client sending its next request on one; Uvicorn has no setting against it, so this app
answers "connection: close" (each connection then ends after its response, and none sits idle).
See docs/exec-releases.md.
"""
import json
import os

RELEASE = os.path.basename(os.getcwd())  # prefork runs each worker in its release directory
# KEEP_ALIVE=1 in prefork.json's env keeps connections open (Uvicorn's default), for measuring.
CLOSE = os.environ.get("KEEP_ALIVE") != "1"


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/health":
        body, kind = b"ok\n", b"text/plain"
    else:
        body = json.dumps({"release": RELEASE, "pid": os.getpid(), "lang": "uvicorn"}).encode()
        kind = b"application/json"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    if CLOSE:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
