"""The App Service managed-identity endpoint (`IDENTITY_ENDPOINT`), as azure-identity and msal call it.

`python -m local.emulators.identity --port 0 --identity-header SECRET` prints
`ready http://127.0.0.1:<port>/msi/token`. Errors carry `statusCode` and `message`, which msal
turns into its own error.

Control API: `GET /_emulator/stats`; `POST /_emulator/faults {"script": [{"status": 500, "message": "...",
"delay_ms": 0, "raw": "<not JSON>"}, ...]}` answers the next token requests with those failures, one
step each, in order; `DELETE /_emulator/faults` forgets the script.
"""
from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from typing import Callable
from urllib.parse import parse_qs, urlsplit

from local.emulators import tokens
from local.emulators.httpserver import EmulatorHandler, EmulatorServer, run_until_signalled

TOKEN_PATH = "/msi/token"
API_VERSION = "2019-08-01"
DEFAULT_TOKEN_TTL_SECONDS = 3600
SYSTEM_ASSIGNED_CLIENT_ID = "5a5e0000-0000-4000-8000-00000000a001"
_ID_PARAMETERS = ("client_id", "object_id", "principal_id", "mi_res_id")


class IdentityServer(EmulatorServer):
    def __init__(
        self,
        address: tuple[str, int],
        *,
        identity_header: str,
        token_ttl: int,
        on_issue: Callable[[str, str, int], None] | None = None,
    ) -> None:
        super().__init__(address, IdentityHandler)
        self.identity_header = identity_header
        self.token_ttl = token_ttl
        # Called with (resource, token, expires_on) before a token is handed out, so a test can make
        # a resource (a PostgreSQL role's password) accept it, as Entra-integrated services do.
        self.on_issue = on_issue
        self.lock = threading.Lock()
        self.tokens_issued = 0
        self.token_requests = 0
        self.last_client_id: str | None = None
        self.fault_script: list[dict] = []

    def next_fault(self) -> dict | None:
        """Count a token request; the scripted failure to answer it with, if any."""
        with self.lock:
            self.token_requests += 1
            return self.fault_script.pop(0) if self.fault_script else None

    @property
    def token_url(self) -> str:
        return self.url + TOKEN_PATH

    def issue(self, resource: str, client_id: str) -> dict:
        token, expires_on = tokens.mint(resource, subject=client_id, app_id=client_id, ttl_seconds=self.token_ttl)
        if self.on_issue is not None:
            self.on_issue(resource, token, expires_on)
        with self.lock:
            self.tokens_issued += 1
            self.last_client_id = client_id
        return {
            "access_token": token,
            "expires_on": str(expires_on),
            "resource": resource,
            "token_type": "Bearer",
            "client_id": client_id,
        }


class IdentityHandler(EmulatorHandler):
    server: IdentityServer

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path == "/_emulator/stats":
            with self.server.lock:
                stats = {
                    "tokens_issued": self.server.tokens_issued,
                    "token_requests": self.server.token_requests,
                    "last_client_id": self.server.last_client_id,
                    "faults_remaining": len(self.server.fault_script),
                }
            self.respond_json(200, stats)
        elif parts.path == TOKEN_PATH:
            self._token(parse_qs(parts.query))
        else:
            self._error(404, f"No route for {parts.path}")

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/_emulator/faults":
            self._error(404, f"No route for {self.path}")
            return
        try:
            script = json.loads(self.read_body())["script"]
            steps = [_fault_step(step) for step in script]
        except (ValueError, KeyError, TypeError) as exc:
            self._error(400, f"bad fault script: {exc}")
            return
        with self.server.lock:
            self.server.fault_script = steps
        self.respond_json(200, {"faults_remaining": len(steps)})

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path != "/_emulator/faults":
            self._error(404, f"No route for {self.path}")
            return
        with self.server.lock:
            self.server.fault_script = []
        self.respond(204)

    def _token(self, query: dict[str, list[str]]) -> None:
        fault = self.server.next_fault()
        if fault is not None:
            time.sleep(fault["delay_ms"] / 1000)
            if fault["raw"] is not None:
                self.respond(fault["status"], fault["raw"].encode(), [("Content-Type", "text/html")])
            else:
                self._error(fault["status"], fault["message"])
            return
        header = self.headers.get("X-IDENTITY-HEADER")
        if header is None:
            self._error(400, "The X-IDENTITY-HEADER header is missing.")
            return
        if header != self.server.identity_header:
            self._error(401, "The X-IDENTITY-HEADER header is not valid.")
            return
        if query.get("api-version", [""])[0] != API_VERSION:
            self._error(400, f"api-version must be {API_VERSION}.")
            return
        resource = query.get("resource", [""])[0]
        if not resource:
            self._error(400, "The resource parameter is required.")
            return
        given = [name for name in _ID_PARAMETERS if name in query]
        if len(given) > 1:
            self._error(400, f"Only one of {', '.join(_ID_PARAMETERS)} may be given.")
            return
        if not given:
            client_id = SYSTEM_ASSIGNED_CLIENT_ID
        elif given[0] == "client_id":
            client_id = query["client_id"][0]
        else:
            client_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{given[0]}:{query[given[0]][0]}"))
        self.respond_json(200, self.server.issue(resource, client_id))

    def _error(self, status: int, message: str) -> None:
        self.respond_json(status, {"statusCode": status, "message": message})


def _fault_step(step: dict) -> dict:
    """A validated script step. Raises ValueError, KeyError or TypeError for a malformed one."""
    status = int(step["status"])
    if not 400 <= status <= 599:
        raise ValueError(f"status must be an error status, got {status}")
    raw = step.get("raw")
    return {
        "status": status,
        "message": str(step.get("message") or "The managed identity endpoint is temporarily unavailable."),
        "delay_ms": int(step.get("delay_ms", 0)),
        "raw": None if raw is None else str(raw),
    }


def serve(
    host: str,
    port: int,
    *,
    identity_header: str,
    token_ttl: int = DEFAULT_TOKEN_TTL_SECONDS,
    on_issue: Callable[[str, str, int], None] | None = None,
) -> IdentityServer:
    """Start the endpoint in a background thread; stop it with `.shutdown()`."""
    server = IdentityServer((host, port), identity_header=identity_header, token_ttl=token_ttl, on_issue=on_issue)
    return server.start()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.emulators.identity", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--identity-header", required=True, help="the secret clients send as X-IDENTITY-HEADER")
    parser.add_argument("--token-ttl", type=int, default=DEFAULT_TOKEN_TTL_SECONDS)
    args = parser.parse_args(argv)
    server = serve(args.host, args.port, identity_header=args.identity_header, token_ttl=args.token_ttl)
    run_until_signalled(server, server.token_url)


if __name__ == "__main__":
    main()
