"""The HTTP plumbing the emulators share: a keep-alive threaded server and a CLI serve loop."""
from __future__ import annotations

import json
import logging
import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable

logger = logging.getLogger(__name__)

_NO_BODY_STATUSES = (204, 304)


class EmulatorServer(ThreadingHTTPServer):
    """A threaded server that runs itself in a background thread; `url` is its base URL."""

    daemon_threads = True
    scheme = "http"
    poll_interval = 0.05  # how long shutdown() may wait for the serving loop to notice

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"{self.scheme}://{host}:{port}"

    def start(self) -> "EmulatorServer":
        threading.Thread(
            target=self.serve_forever, args=(self.poll_interval,), name=type(self).__name__, daemon=True
        ).start()
        return self

    def shutdown(self) -> None:
        super().shutdown()
        self.server_close()


class EmulatorHandler(BaseHTTPRequestHandler):
    """Keep-alive handler whose responses go out in one write with a Content-Length."""

    protocol_version = "HTTP/1.1"
    # Header and body leave in one buffered write, and without Nagle, so keep-alive clients
    # never wait on a delayed ACK.
    wbufsize = 1 << 16
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - signature of the base class
        logger.debug("%s " + format, self.address_string(), *args)

    def read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def respond(self, status: int, body: bytes = b"", headers: Iterable[tuple[str, str]] = ()) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if status not in _NO_BODY_STATUSES:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and status not in _NO_BODY_STATUSES:
            self.wfile.write(body)

    def respond_json(self, status: int, payload: object, headers: Iterable[tuple[str, str]] = ()) -> None:
        body = json.dumps(payload).encode()
        self.respond(status, body, [("Content-Type", "application/json; charset=utf-8"), *headers])


def run_until_signalled(server: EmulatorServer, ready_url: str) -> None:
    """Print `ready <url>`, serve until SIGTERM or SIGINT, then shut the server down."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    print(f"ready {ready_url}", flush=True)
    while not stop.wait(0.5):
        pass
    server.shutdown()
