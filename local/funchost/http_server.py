"""Serve the app's HTTP triggers under /<routePrefix>/ with a ThreadingHTTPServer.

Auth levels (FUNCTION, ADMIN) are not enforced, as with `func start`: no key is needed locally.
`GET /` and `GET /admin/host/status` answer a small JSON status.
"""
from __future__ import annotations

import json
import logging
import socket
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import azure.functions as func

from local.funchost.app_loader import FunctionSpec
from local.funchost.invoker import Invoker
from local.funchost.routes import MethodNotAllowed, Route, compile_route, match_route

logger = logging.getLogger(__name__)

_STATUS_PATHS = ("/", "/admin/host/status")


def build_http_server(
    specs: list[FunctionSpec], *, invoker: Invoker, route_prefix: str, host: str, port: int,
    listen_fd: int | None = None,
) -> ThreadingHTTPServer:
    """A server (bound, not yet serving) for the HTTP-triggered functions in `specs`, on `listen_fd`
    (a socket already listening) if given.

    Raises OSError when the address cannot be bound, RouteTemplateError for a bad route.
    """
    routes = [
        compile_route(
            spec.trigger.route or spec.name,
            None if not spec.trigger.methods else [str(getattr(m, "value", m)) for m in spec.trigger.methods],
            spec,
        )
        for spec in specs
        if spec.trigger.type == "httpTrigger"
    ]
    status = json.dumps({"state": "Running", "functions": sorted(spec.name for spec in specs)}).encode()
    handler = type(
        "FunctionsRequestHandler",
        (_Handler,),
        {"routes": routes, "invoker": invoker, "prefix": f"/{route_prefix}/" if route_prefix else "/", "status": status},
    )
    if listen_fd is None:
        return ThreadingHTTPServer((host, port), handler)
    server = ThreadingHTTPServer((host, port), handler, bind_and_activate=False)
    server.socket.close()
    server.socket = socket.socket(fileno=listen_fd)
    server.socket.set_inheritable(False)
    server.server_address = server.socket.getsockname()
    server.server_name, server.server_port = str(server.server_address[0]), int(server.server_address[1])
    return server


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes; with Nagle on, keep-alive clients wait ~40 ms for
    # the delayed ACK on every request.
    disable_nagle_algorithm = True
    routes: list[Route[FunctionSpec]]
    invoker: Invoker
    prefix: str
    status: bytes

    def do_GET(self) -> None:
        self._handle()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("%s %s", self.address_string(), format % args)

    def _handle(self) -> None:
        with self.invoker.busy():
            self._exchange()

    def _exchange(self) -> None:
        url = urlsplit(self.path)
        body = self._read_body()
        if body is None:
            return
        if self.command == "GET" and url.path in _STATUS_PATHS:
            self._send(200, {"Content-Type": "application/json"}, self.status)
            return
        if not (url.path + "/").startswith(self.prefix):
            self._send(404, {}, b"")
            return
        try:
            found = match_route(self.routes, url.path[len(self.prefix) - 1:], self.command)
        except MethodNotAllowed as exc:
            self._send(405, {"Allow": ", ".join(exc.allowed)}, b"")
            return
        if found is None:
            self._send(404, {}, b"")
            return
        request = func.HttpRequest(
            self.command,
            f"http://{self.headers.get('Host', '%s:%s' % self.server.server_address[:2])}{self.path}",
            headers={name: ", ".join(self.headers.get_all(name, [])) for name in self.headers.keys()},
            params={key: ",".join(values) for key, values in parse_qs(url.query, keep_blank_values=True).items()},
            route_params=found.route_params,
            body=body,
        )
        spec = found.target
        try:
            response = self.invoker.invoke(spec, request, reason="This function was programmatically called via the host APIs.")
        except Exception:
            logger.exception("function %s failed", spec.name, extra={"function": spec.name})
            self._send(500, {"Content-Type": "text/plain; charset=utf-8"}, b"Internal Server Error")
            return
        self._send_response(spec, response)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._send(411, {}, b"")  # chunked uploads are not supported locally
            self.close_connection = True
            return None
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send_response(self, spec: FunctionSpec, response: Any) -> None:
        if isinstance(response, (str, bytes)):
            response = func.HttpResponse(response)
        if not isinstance(response, func.HttpResponse):
            logger.error(
                "function %s returned %s, not an HttpResponse", spec.name, type(response).__name__,
                extra={"function": spec.name},
            )
            self._send(500, {"Content-Type": "text/plain; charset=utf-8"}, b"Internal Server Error")
            return
        headers = dict(response.headers.items())
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = f"{response.mimetype}; charset={response.charset}"
        self._send(response.status_code, headers, response.get_body())

    def _send(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(status)
        for name, value in headers.items():
            if name.lower() not in ("content-length", "transfer-encoding"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
