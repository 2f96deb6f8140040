"""A small client for the Dataverse Web API `lead` table.

One `requests.Session`, the OData headers, a (connect, read) timeout on every call, and bounded
retries inside a call: a short Retry-After on 429 is waited out, 408/5xx and connection failures
are retried with jittered backoff, a 401 refreshes the token once. Everything else surfaces as a
`d365.errors` type. URLs and request bodies are never logged: they hold contact addresses.
"""
from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from typing import Any, Callable, Mapping, Sequence

import requests
import requests.adapters
import requests.utils

from d365.auth import TokenProvider
from d365.errors import (
    D365APIError,
    D365ConnectionError,
    D365Error,
    D365RateLimitError,
    error_from_response,
)
from d365.metadata import LeadSchema, parse_lead_schema
from d365.odata import filter_eq_any, key_segment, query_string
from d365.telemetry import record_dataverse_request

logger = logging.getLogger(__name__)

DEFAULT_API_VERSION = "v9.2"
CONNECT_TIMEOUT_SECONDS = 5.0
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_FACTOR = 3.0
MAX_RATE_LIMIT_WAITS = 3
LEAD_METADATA = "EntityDefinitions(LogicalName='lead')/Attributes"

_ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
}
_DROPPED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


POOL_SIZE = 32  # >= host.json batchSize + newBatchThreshold: one kept connection per worker


class DataverseClient:
    def __init__(
        self,
        base_url: str,
        token_provider: TokenProvider,
        *,
        api_version: str = DEFAULT_API_VERSION,
        timeout: float = 30.0,
        inline_retry_after: float = 5,
        max_retries: int = 2,
        sleep: Callable[[float], None] = time.sleep,
        session: requests.Session | None = None,
    ) -> None:
        self._api = f"{base_url.rstrip('/')}/api/data/{api_version}"
        self._tokens = token_provider
        self._timeout = (min(CONNECT_TIMEOUT_SECONDS, timeout), timeout)
        self._inline_retry_after = inline_retry_after
        self._max_retries = max_retries
        self._sleep = sleep
        self._session = session or _pooled_session(self._api)
        self._session.headers.update(_ODATA_HEADERS)
        self._sent = 0
        self._sent_lock = threading.Lock()

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far, retries included."""
        with self._sent_lock:
            return self._sent

    def close(self) -> None:
        self._session.close()

    def whoami(self) -> dict:
        """{"UserId", "BusinessUnitId", "OrganizationId"}. Raises D365Error."""
        return _json(self._request("GET", "WhoAmI", kind="whoami"))

    def create_lead(self, lead_id: str, payload: Mapping[str, Any]) -> None:
        """Create the lead with this id. Raises D365DuplicateError when it exists, D365Error."""
        self._request("PATCH", f"leads({_guid(lead_id)})", body=payload, headers={"If-None-Match": "*"}, kind="create_lead")

    def update_lead(self, lead_id: str, payload: Mapping[str, Any]) -> None:
        """Update an existing lead. Raises D365NotFoundError when it does not exist, D365Error."""
        self._request("PATCH", f"leads({_guid(lead_id)})", body=payload, headers={"If-Match": "*"}, kind="update_lead")

    def upsert_lead_by_key(self, key: Mapping[str, str | int], payload: Mapping[str, Any]) -> str:
        """Create or update the lead with this alternate key; returns its leadid. Key columns are
        taken from the URL, never the body. Raises D365DuplicateError on a key clash, D365Error."""
        body = {column: value for column, value in payload.items() if column not in key}
        response = self._request(
            "PATCH",
            f"leads{key_segment(key)}",
            query={"$select": "leadid"},
            body=body,
            headers={"Prefer": "return=representation"},
            kind="upsert_lead",
        )
        lead_id = _json(response).get("leadid")
        if not isinstance(lead_id, str):
            raise D365APIError("upsert answered without a leadid", status=response.status_code)
        return lead_id

    def find_leads(self, matches: Sequence[tuple[str, str]], *, top: int = 5) -> list[dict]:
        """Leads where any (column, value) matches, case-insensitively; one GET, none when
        `matches` is empty. Raises D365Error."""
        if not matches:
            return []
        columns = list(dict.fromkeys(column for column, _ in matches))
        query = {"$select": ",".join(["leadid", *columns]), "$filter": filter_eq_any(matches), "$top": str(top)}
        return _json(self._request("GET", "leads", query=query, kind="find_leads")).get("value", [])

    def get_lead(self, lead_id: str, *, select: Sequence[str] | None = None) -> dict:
        """The lead's columns. Raises D365NotFoundError when it does not exist, D365Error."""
        query = {"$select": ",".join(select)} if select else None
        return _json(self._request("GET", f"leads({_guid(lead_id)})", query=query, kind="get_lead"))

    def read_lead_schema(self) -> LeadSchema:
        """The lead table's columns, types, max lengths and choice options, in four GETs.
        Raises D365Error (D365APIError when a response is not metadata)."""
        bodies = [
            _json(self._request("GET", path, query=query, kind="read_lead_schema"))
            for path, query in (
                (LEAD_METADATA, {"$select": "LogicalName,AttributeType"}),
                (
                    f"{LEAD_METADATA}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
                    {"$select": "LogicalName", "$expand": "OptionSet,GlobalOptionSet"},
                ),
                (f"{LEAD_METADATA}/Microsoft.Dynamics.CRM.StringAttributeMetadata", {"$select": "LogicalName,MaxLength"}),
                (f"{LEAD_METADATA}/Microsoft.Dynamics.CRM.MemoAttributeMetadata", {"$select": "LogicalName,MaxLength"}),
            )
        ]
        try:
            return parse_lead_schema(*bodies)
        except ValueError as exc:
            raise D365APIError(f"lead metadata unreadable: {exc}") from exc

    def _request(
        self,
        method: str,
        path: str,
        *,
        kind: str,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send with bounded retries. Retrying writes is safe because every write this client
        sends is a PATCH that is idempotent or conditional: an update or keyed upsert applied
        twice leaves the same record, and a create (`If-None-Match: *`) retried after its first
        attempt committed answers 412 rather than making a second record."""
        url = f"{self._api}/{path}" + (f"?{query_string(query)}" if query else "")
        request_headers = dict(headers or {})
        data = None
        if body is not None:
            request_headers["Content-Type"] = "application/json; charset=utf-8"
            data = json.dumps(body).encode("utf-8")
        if method == "GET":
            request_headers["If-None-Match"] = "null"
        retries = rate_limit_waits = 0
        waited = 0.0
        reauthenticated = False
        while True:
            request_headers["Authorization"] = f"Bearer {self._tokens.get_token()}"
            response = None
            try:
                with self._sent_lock:
                    self._sent += 1
                response = self._session.request(
                    method, url, data=data, headers=request_headers, timeout=self._timeout
                )
            except _DROPPED as exc:
                # The message names the error type only: requests' own text carries the URL.
                error = D365ConnectionError(f"{kind}: {type(exc).__name__}")
                if retries < self._max_retries:
                    retries = self._backoff(retries, kind, error)
                    continue
                raise error from exc
            finally:
                record_dataverse_request(kind, None if response is None else response.status_code)
            if response.status_code < 400:
                return response
            error = error_from_response(response.status_code, response.headers, response.content)
            if response.status_code == 401 and not reauthenticated:
                self._tokens.invalidate()
                reauthenticated = True
                continue
            if isinstance(error, D365RateLimitError):
                logger.warning(
                    "d365_rate_limit kind=%s retry_after=%s", kind, error.retry_after,
                    extra={"retry_after": error.retry_after, "kind": kind},
                )
                if (
                    error.retry_after <= self._inline_retry_after
                    and waited + error.retry_after <= 2 * self._inline_retry_after
                    and rate_limit_waits < MAX_RATE_LIMIT_WAITS
                ):
                    self._sleep(error.retry_after)
                    waited += error.retry_after
                    rate_limit_waits += 1
                    continue
                raise error
            if error.transient and retries < self._max_retries:
                retries = self._backoff(retries, kind, error)
                continue
            raise error

    def _backoff(self, retries: int, kind: str, error: D365Error) -> int:
        delay = BACKOFF_BASE_SECONDS * BACKOFF_FACTOR**retries * random.uniform(0.8, 1.2)
        logger.warning(
            "d365_retry kind=%s attempt=%s delay=%.2f error=%s", kind, retries + 1, delay, error,
            extra={"kind": kind, "attempt": retries + 1},
        )
        self._sleep(delay)
        return retries + 1


def _pooled_session(api_url: str) -> requests.Session:
    """A session that keeps a connection per host worker (requests keeps 10), and reads the
    environment's proxy and CA settings once, here: requests otherwise scans os.environ on every
    request, a quarter of a lead's Dataverse time in a profile."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=POOL_SIZE)
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    session.proxies = requests.utils.get_environ_proxies(api_url)
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    session.trust_env = False
    return session


def _guid(lead_id: str) -> str:
    """The id as Dataverse writes it in a URL; raises ValueError for anything but a GUID."""
    return str(uuid.UUID(lead_id))


def _json(response: requests.Response) -> dict:
    try:
        body = response.json()
    except ValueError as exc:
        raise D365APIError("response is not JSON", status=response.status_code) from exc
    if not isinstance(body, dict):
        raise D365APIError("response is not a JSON object", status=response.status_code)
    return body
