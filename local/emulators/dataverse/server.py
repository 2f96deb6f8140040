"""The Dataverse emulator's HTTP server: bearer auth, fault injection, and dispatch to the Web API
or the control API."""
from __future__ import annotations

import json
import logging
import ssl
import time
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from local.emulators import tokens
from local.emulators.dataverse import control
from local.emulators.dataverse.bulk import BulkSupport
from local.emulators.dataverse.errors import resource_not_found
from local.emulators.dataverse.faults import FaultPlan
from local.emulators.dataverse.protection import Limits, ServiceProtection
from local.emulators.dataverse.queryoptions import MAX_PAGE_SIZE, PageLimit
from local.emulators.dataverse.routes import Api
from local.emulators.dataverse.schema import profile_schema
from local.emulators.dataverse.stats import DROPPED, Stats
from local.emulators.dataverse.store import LeadStore
from local.emulators.dataverse.webapi import (
    API_PATH,
    Reply,
    Request,
    WebApi,
    error_reply,
    kind_of,
    reply_body,
    reply_headers,
    request_id_headers,
)
from local.emulators.httpserver import EmulatorHandler, EmulatorServer

if TYPE_CHECKING:
    from local.emulators.authority import CertFiles

logger = logging.getLogger(__name__)

DEFAULT_TENANT_ID = "1d5a0000-0000-4000-8000-00000000d001"
CONTROL_PREFIX = "/_emulator/"
_API_PREFIX = API_PATH + "/"
_TOKEN_CACHE_SIZE = 1024  # verified tokens kept so benchmarks do not pay an HMAC per request


class DataverseServer(EmulatorServer):
    def __init__(
        self,
        address: tuple[str, int],
        *,
        profile: str,
        alternate_key: str | None,
        resource: str | None,
        tenant_id: str,
        bulk_supported: bool = True,
        protection: Limits | None = None,
        tls: CertFiles | None = None,
        max_page_size: int = MAX_PAGE_SIZE,
    ) -> None:
        self.page_limit = PageLimit(max_page_size)  # checked before the socket is bound
        super().__init__(address, DataverseHandler)
        if tls is not None:  # https, as Microsoft's own client insists (authority.write_certificates makes them)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.cert, tls.key)
            self.socket = context.wrap_socket(self.socket, server_side=True)
            self.scheme = "https"
        self.resource = resource or self.url
        self.tenant_id = tenant_id
        self.store = LeadStore(profile_schema(profile, alternate_key))
        self.faults = FaultPlan()
        self.stats = Stats()
        self.web_api = WebApi(self.store, self.url, self.page_limit)
        self.bulk_support = BulkSupport(bulk_supported)
        self.protection = ServiceProtection(protection)
        self.api = Api(self.web_api, self.store, self.bulk_support)
        self.emulator = control.Emulator(self.store, self.faults, self.stats, self.bulk_support, self.protection,
                                         self.page_limit)
        self.verified_tokens: dict[str, dict] = {}

    @property
    def api_url(self) -> str:
        return self.url + API_PATH


class DataverseHandler(EmulatorHandler):
    server: DataverseServer

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        raw_path, _, raw_query = self.path.partition("?")
        body = self.read_body()
        if raw_path.startswith(CONTROL_PREFIX):
            self._control(method, raw_path[len(CONTROL_PREFIX):], body)
        elif raw_path.startswith(_API_PREFIX):
            self._web_api(method, unquote(raw_path[len(_API_PREFIX):]), raw_query, body)
        else:
            self._reply(error_reply(resource_not_found(raw_path)))

    def _control(self, method: str, path: str, body: bytes) -> None:
        try:
            payload = json.loads(body) if body.strip() else None
        except ValueError:
            self.respond_json(400, {"error": "the body is not JSON"})
            return
        status, answer = control.handle(self.server.emulator, method, unquote(path), payload)
        if answer is None:
            self.respond(status)
        else:
            self.respond_json(status, answer)

    def _web_api(self, method: str, path: str, raw_query: str, body: bytes) -> None:
        server = self.server
        kind = kind_of(method, path)
        claims = self._authenticate()
        if claims is None:
            server.stats.record(kind, 401)
            challenge = (
                f"Bearer authorization_uri=https://login.microsoftonline.com/{server.tenant_id}/oauth2/authorize, "
                f"resource_id={server.resource.rstrip('/')}/"
            )
            self.respond(401, b"", [("WWW-Authenticate", challenge), *request_id_headers()])
            return
        user = str(claims.get("appid") or claims.get("oid") or claims.get("sub") or "")
        refusal = server.protection.admit(user)
        if refusal is not None:
            server.stats.throttled(refusal.limit)
            self._reply(error_reply(refusal.error, ("Retry-After", str(refusal.retry_after))), kind)
            return
        started = time.monotonic()
        operations = 1
        try:
            operations = self._admitted(method, path, raw_query, body, kind, claims)
        finally:
            server.protection.release(user, (time.monotonic() - started) * 1000, operations)

    def _admitted(self, method: str, path: str, raw_query: str, body: bytes, kind: str, claims: dict) -> int:
        """Apply the fault plan and answer the request; returns how many records or inner requests it ran."""
        server = self.server
        fault = server.faults.next(method)
        if fault is not None:
            if fault.latency_ms:
                time.sleep(fault.latency_ms / 1000)
            if fault.drop == "before":
                self._drop(kind)
                return 1
            if fault.error is not None:
                retry = (("Retry-After", str(fault.retry_after)),) if fault.retry_after is not None else ()
                self._reply(error_reply(fault.error, *retry), kind)
                return 1
        request = Request(method, path, dict(parse_qsl(raw_query, keep_blank_values=True)), self.headers, body, claims)
        reply = server.api.handle(request)
        if fault is not None and fault.drop == "after_commit":
            self._drop(kind)
            return reply.operations
        self._reply(reply, kind)
        return reply.operations

    def _authenticate(self) -> dict | None:
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        cache = self.server.verified_tokens
        claims = cache.get(token)
        if claims is not None and claims["exp"] > time.time():
            return claims
        try:
            claims = tokens.verify(token, self.server.resource)
        except tokens.TokenError as exc:
            logger.info("rejected bearer token: %s", exc)
            return None
        if len(cache) >= _TOKEN_CACHE_SIZE:
            cache.clear()
        cache[token] = claims
        return claims

    def _drop(self, kind: str) -> None:
        self.server.stats.record(kind, DROPPED)
        self.close_connection = True

    def _reply(self, reply: Reply, kind: str | None = None) -> None:
        if kind is not None:
            self.server.stats.record(kind, reply.status)
        self.respond(reply.status, reply_body(reply), reply_headers(reply))


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    profile: str = "mvp",
    alternate_key: str | None = None,
    resource: str | None = None,
    tenant_id: str = DEFAULT_TENANT_ID,
    bulk_supported: bool = True,
    protection: Limits | None = None,
    tls: CertFiles | None = None,
    max_page_size: int = MAX_PAGE_SIZE,
) -> DataverseServer:
    """Start the emulator in a background thread; stop it with `.shutdown()`. With `tls` (from
    `authority.write_certificates`) it serves https. `max_page_size` is the server's largest page
    (Dataverse's 5000; lower it so paging is exercised).

    Raises ValueError for an unknown profile, an unusable alternate key column or a page size outside
    1..5000, OSError if the address cannot be bound.
    """
    server = DataverseServer(
        (host, port), profile=profile, alternate_key=alternate_key, resource=resource, tenant_id=tenant_id,
        bulk_supported=bulk_supported, protection=protection, tls=tls, max_page_size=max_page_size,
    )
    return server.start()
