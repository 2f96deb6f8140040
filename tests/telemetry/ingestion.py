"""A stand-in for the Application Insights ingestion service: accepts what the Azure Monitor
exporter posts to `<IngestionEndpoint>/v2.1/track` (or `/v2/track`), gzip'd or not, as a JSON array
or JSON lines of envelopes, and keeps every envelope."""

from __future__ import annotations

import gzip
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TRACK_PATHS = ("/v2.1/track", "/v2/track")

# Envelope baseType -> the Application Insights table it lands in.
TABLES = {
    "RequestData": "requests",
    "RemoteDependencyData": "dependencies",
    "MessageData": "traces",
    "ExceptionData": "exceptions",
    "MetricData": "customMetrics",
    "EventData": "customEvents",
}


class Ingestion:
    def __init__(self) -> None:
        self.envelopes: list[dict[str, Any]] = []
        self.paths: set[str] = set()
        self._lock = threading.Lock()
        received = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.split("?")[0] not in TRACK_PATHS:
                    self._answer(404, {})
                    return
                items = _envelopes(body)
                with received._lock:
                    received.envelopes.extend(items)
                    received.paths.add(self.path.split("?")[0])
                self._answer(200, {"itemsReceived": len(items), "itemsAccepted": len(items), "errors": []})

            def _answer(self, status: int, body: dict) -> None:
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="ingestion", daemon=True).start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    def connection_string(self) -> str:
        return f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint={self.url}"

    def by_table(self, table: str) -> list[dict[str, Any]]:
        """The `baseData` of every envelope that lands in `table`."""
        with self._lock:
            envelopes = list(self.envelopes)
        return [e["data"]["baseData"] for e in envelopes if TABLES.get(e.get("data", {}).get("baseType")) == table]

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.envelopes)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _envelopes(body: bytes) -> list[dict[str, Any]]:
    if body[:2] == b"\x1f\x8b":
        body = gzip.decompress(body)
    text = body.decode("utf-8").strip()
    if text.startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.strip()]
