"""A small client for the Dataverse Web API `lead` table.

One `requests.Session`, the OData headers, a (connect, read) timeout on every call, and bounded
retries inside a call: a short Retry-After on 429 is waited out, 408/5xx and connection failures
are retried with jittered backoff, a 401 refreshes the token once. Everything else surfaces as a
`d365.errors` type. URLs and request bodies are never logged: they hold contact addresses.

Two things outside the call shape it: the current `d365.deadline` (nothing is sent once it has
passed; timeouts and waits are cut to what is left) and an optional shared `ThrottleGate` (a 429
anywhere holds back every request until its Retry-After has passed).

Writes carry optimistic concurrency: `update_lead(..., etag=...)` sends `If-Match: <etag>` and a
412 becomes `D365RecordChangedError`; every write answers the record's new ETag.
"""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import requests
import requests.adapters
import requests.utils

from d365 import batch, deadline
from d365.auth import TokenProvider
from d365.bulk import BatchItemResult, BulkTarget, batch_requests, batch_results, upsert_multiple_body
from d365.errors import (
    KEY_VIOLATION_CODE,
    D365APIError,
    D365ConnectionError,
    D365DeadlineExceededError,
    D365DuplicateError,
    D365Error,
    D365PreconditionFailedError,
    D365RateLimitError,
    D365RecordChangedError,
    error_from_response,
)
from d365.metadata import LeadSchema, parse_lead_schema
from d365.odata import filter_eq_any, filter_in, key_segment, query_string
from d365.telemetry import record_dataverse_request
from d365.throttle import CONCURRENCY_LIMIT_CODE, ConcurrencyLimit, ThrottleGate

logger = logging.getLogger(__name__)

DEFAULT_API_VERSION = "v9.2"
CONNECT_TIMEOUT_SECONDS = 5.0
BACKOFF_BASE_SECONDS = 0.1
BACKOFF_FACTOR = 3.0
MAX_RATE_LIMIT_WAITS = 3
LEAD_METADATA = "EntityDefinitions(LogicalName='lead')/Attributes"
# A stable order for lookups (issue 8): the oldest record first, the id breaking ties.
FIND_ORDER = "createdon asc,leadid asc"
BULK_MESSAGES = ("CreateMultiple", "UpdateMultiple")  # both supported = UpsertMultiple too (docs/dataverse.md 7.2)
FIND_PAGE_SIZE = 500
MAX_FIND_PAGES = 20

_ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
}
_DROPPED = (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)


POOL_SIZE = 32  # >= host.json batchSize + newBatchThreshold: one kept connection per worker
MAX_CONCURRENT_REQUESTS = 52  # Dataverse's concurrency limit per user; adapts down on its 429s


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
        throttle: ThrottleGate | None = None,
        max_concurrent: int = MAX_CONCURRENT_REQUESTS,
    ) -> None:
        self._api = f"{base_url.rstrip('/')}/api/data/{api_version}"
        self._tokens = token_provider
        self._timeout = (min(CONNECT_TIMEOUT_SECONDS, timeout), timeout)
        self._inline_retry_after = inline_retry_after
        self._max_retries = max_retries
        self._sleep = sleep
        self._session = session or _pooled_session(self._api)
        self._session.headers.update(_ODATA_HEADERS)
        self._throttle = throttle
        self._concurrency = throttle.concurrency if throttle is not None else ConcurrencyLimit(max_concurrent)
        self._sent = 0
        self._sent_lock = threading.Lock()
        self._dop_hint: int | None = None
        self._bulk_support: bool | None = None
        self._bulk_support_lock = threading.Lock()

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far, retries included."""
        with self._sent_lock:
            return self._sent

    @property
    def dop_hint(self) -> int | None:
        """The latest `x-ms-dop-hint` Dataverse sent: its recommended number of parallel requests."""
        return self._dop_hint

    @property
    def throttle(self) -> ThrottleGate | None:
        return self._throttle

    def close(self) -> None:
        self._session.close()

    def whoami(self) -> dict:
        """{"UserId", "BusinessUnitId", "OrganizationId"}. Raises D365Error."""
        return _json(self._request("GET", "WhoAmI", kind="whoami"))

    def create_lead(self, lead_id: str, payload: Mapping[str, Any]) -> str:
        """Create the lead with this id; returns its ETag.
        Raises D365DuplicateError when it exists (or another record holds its key), D365Error."""
        try:
            response = self._request(
                "PATCH",
                f"leads({_guid(lead_id)})",
                query={"$select": "leadid"},
                body=payload,
                headers={"If-None-Match": "*", "Prefer": "return=representation"},
                kind="create_lead",
            )
        except D365PreconditionFailedError as exc:
            raise _as(D365DuplicateError, exc) from exc
        return _etag(response)

    def update_lead(self, lead_id: str, payload: Mapping[str, Any], *, etag: str | None = None) -> str:
        """Update an existing lead, only if it is still at `etag` when one is given; returns its
        new ETag. Raises D365NotFoundError when it does not exist, D365RecordChangedError when it
        is no longer at `etag`, D365DuplicateError when another record holds the key values the
        payload sets, D365Error."""
        try:
            response = self._request(
                "PATCH",
                f"leads({_guid(lead_id)})",
                query={"$select": "leadid"},
                body=payload,
                headers={"If-Match": etag or "*", "Prefer": "return=representation"},
                kind="update_lead",
            )
        except D365PreconditionFailedError as exc:
            if etag is None or exc.code == KEY_VIOLATION_CODE:
                raise _as(D365DuplicateError, exc) from exc
            raise _as(D365RecordChangedError, exc) from exc
        return _etag(response)

    def upsert_lead_by_key(self, key: Mapping[str, str | int], payload: Mapping[str, Any]) -> tuple[str, str, bool]:
        """Create or update the lead with this alternate key; returns (leadid, ETag, created).
        Key columns are taken from the URL, never the body. `created` is what the last attempt
        saw: after a dropped attempt that had committed, the retry reports an update.
        Raises D365DuplicateError on a key clash, D365Error."""
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
        return lead_id, _etag(response), response.status_code == 201

    def get_lead_etag(self, lead_id: str) -> str:
        """The lead's current ETag. Raises D365NotFoundError when it does not exist, D365Error."""
        response = self._request("GET", f"leads({_guid(lead_id)})", query={"$select": "leadid"}, kind="get_lead_etag")
        return _etag(response)

    def find_leads(self, matches: Sequence[tuple[str, str]], *, select: Sequence[str] = (), top: int = 5) -> list[dict]:
        """Leads where any (column, value) matches, case-insensitively, oldest first (each with
        its `@odata.etag`, `leadid`, the match columns and `select`); one GET, none when `matches`
        is empty. Raises D365Error."""
        if not matches:
            return []
        columns = list(dict.fromkeys(["leadid", *(column for column, _ in matches), *select]))
        query = {
            "$select": ",".join(columns),
            "$filter": filter_eq_any(matches),
            "$orderby": FIND_ORDER,
            "$top": str(top),
        }
        return _json(self._request("GET", "leads", query=query, kind="find_leads")).get("value", [])

    def get_lead(self, lead_id: str, *, select: Sequence[str] | None = None) -> dict:
        """The lead's columns. Raises D365NotFoundError when it does not exist, D365Error."""
        query = {"$select": ",".join(select)} if select else None
        return _json(self._request("GET", f"leads({_guid(lead_id)})", query=query, kind="get_lead"))

    def find_leads_in(
        self, column: str, values: Sequence[str], *, select: Sequence[str] = (), page_size: int = FIND_PAGE_SIZE
    ) -> list[dict]:
        """Leads whose `column` equals any of `values` (case-insensitively), oldest first; one query
        with `Microsoft.Dynamics.CRM.In`, following `@odata.nextLink`. Raises D365Error."""
        return self.find_leads_in_any({column: values}, select=select, page_size=page_size)

    def find_leads_in_any(
        self, matches: Mapping[str, Sequence[str]], *, select: Sequence[str] = (), page_size: int = FIND_PAGE_SIZE
    ) -> list[dict]:
        """Leads where any column of `matches` equals any of its values, oldest first (each with
        its `@odata.etag`, `leadid`, the match columns and `select`); one query (and its pages),
        none when there is nothing to match. Raises D365Error."""
        matches = {column: list(dict.fromkeys(values)) for column, values in matches.items() if values}
        if not matches:
            return []
        columns = list(dict.fromkeys(["leadid", *matches, *select]))
        query = {
            "$select": ",".join(columns),
            "$filter": " or ".join(filter_in(column, values) for column, values in matches.items()),
            "$orderby": FIND_ORDER,
        }
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        page = _json(self._request("GET", "leads", query=query, headers=headers, kind="find_leads_in"))
        found = list(page.get("value", []))
        for _ in range(MAX_FIND_PAGES - 1):
            next_link = page.get("@odata.nextLink")
            if not isinstance(next_link, str):
                break
            page = _json(self._request("GET", next_link, headers=headers, kind="find_leads_in"))
            found.extend(page.get("value", []))
        else:
            raise D365APIError(f"find_leads_in: more than {MAX_FIND_PAGES} pages of leads matched")
        return found

    def bulk_support(self, *, refresh: bool = False) -> bool:
        """Whether the org supports CreateMultiple and UpdateMultiple (hence UpsertMultiple) on
        `lead`, from `sdkmessagefilters`; asked once per client unless `refresh`. Raises D365Error."""
        with self._bulk_support_lock:  # one thread asks; the others wait for its answer
            if self._bulk_support is None or refresh:
                self._bulk_support = all(self._message_supported(message) for message in BULK_MESSAGES)
            return self._bulk_support

    def _message_supported(self, message: str) -> bool:
        query = {
            "$select": "sdkmessagefilterid",
            "$filter": "sdkmessageid/name eq @message and primaryobjecttypecode eq @table",
            "@message": f"'{message}'",
            "@table": "'lead'",
        }
        return bool(_json(self._request("GET", "sdkmessagefilters", query=query, kind="bulk_support")).get("value"))

    def upsert_multiple(self, targets: Sequence[BulkTarget]) -> None:
        """Create or update every target in one `UpsertMultiple` request. On a standard table it is
        all or nothing: one bad target fails the request and nothing is written; the error's
        `failed_indexes` names the failing targets when Dataverse says. Raises ValueError for no
        targets or a target with an ETag, D365Error."""
        self._request(
            "POST",
            "leads/Microsoft.Dynamics.CRM.UpsertMultiple",
            body=upsert_multiple_body(targets),
            headers={"Prefer": 'odata.include-annotations="Microsoft.PowerApps.CDS.ErrorDetails.*"'},
            kind="upsert_multiple",
        )

    def batch_write(self, targets: Sequence[BulkTarget]) -> list[BatchItemResult]:
        """Write every target in one `$batch` of independent upserts (`Prefer: odata.continue-on-error`):
        one result per target, in order, each the record's id, ETag and created flag, or that
        target's own D365Error. Raises ValueError for no targets or more than 1000, D365Error when
        the batch as a whole fails (a 429 included)."""
        content_type, data = batch.build(batch_requests(self._api, targets, guid=_guid))
        response = self._request(
            "POST",
            "$batch",
            data=data,
            content_type=content_type,
            headers={"Prefer": "odata.continue-on-error"},
            kind="batch",
        )
        try:
            responses = batch.parse(response.headers.get("Content-Type", ""), response.content)
        except ValueError as exc:
            raise D365APIError(f"$batch answer unreadable: {exc}", status=response.status_code) from exc
        results = batch_results(targets, responses)
        for result in results:
            if result.error is not None:
                result.error.earlier_attempt_unanswered = getattr(response, "earlier_attempt_unanswered", False)
                if isinstance(result.error, D365RateLimitError) and self._throttle is not None:
                    self._throttle.on_rate_limited(result.error.retry_after)
        return results

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
                (
                    f"{LEAD_METADATA}/Microsoft.Dynamics.CRM.StringAttributeMetadata",
                    {"$select": "LogicalName,MaxLength"},
                ),
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
        data: bytes | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send with bounded retries. Retrying writes is safe because every write this client
        sends is idempotent or conditional: an update or keyed upsert applied twice leaves the same
        record (so do UpsertMultiple and a $batch of such PATCHes), a create (`If-None-Match: *`)
        retried after its first attempt committed answers 412 rather than making a second record,
        and an update at an ETag answers 412 (the error then says `earlier_attempt_unanswered`)."""
        # An absolute `path` is a link Dataverse gave (@odata.nextLink): sent unchanged.
        url = path if path.startswith(("https://", "http://")) else f"{self._api}/{path}"
        url += f"?{query_string(query)}" if query else ""
        request_headers = dict(headers or {})
        if body is not None:
            request_headers["Content-Type"] = "application/json; charset=utf-8"
            data = json.dumps(body).encode("utf-8")
        elif data is not None and content_type is not None:
            request_headers["Content-Type"] = content_type
        if method == "GET":
            request_headers["If-None-Match"] = "null"
        retries = rate_limit_waits = 0
        waited = 0.0
        reauthenticated = just_waited = unanswered = False
        while True:
            if self._throttle is not None and not just_waited:
                self._throttle.before_request()
            just_waited = False
            _check_deadline(kind)
            request_headers["Authorization"] = f"Bearer {self._tokens.get_token()}"
            timeout = self._timeout_now(kind)
            response = None
            if not self._concurrency.acquire(timeout=deadline.remaining()):
                raise D365DeadlineExceededError(f"{kind}: the deadline passed waiting for a free request slot")
            try:
                with self._sent_lock:
                    self._sent += 1
                response = self._session.request(method, url, data=data, headers=request_headers, timeout=timeout)
            except _DROPPED as exc:
                # The message names the error type only: requests' own text carries the URL.
                error: D365Error = D365ConnectionError(f"{kind}: {type(exc).__name__}")
                error.earlier_attempt_unanswered = unanswered
                unanswered = True
                if self._may_retry(retries, kind, error):
                    retries += 1
                    continue
                _log_failure(kind, error)
                raise error from exc
            finally:
                # With a gate, the gate cuts (and shares the cut) when it hears of the 429.
                too_many = self._throttle is None and response is not None and _too_many_concurrent(response)
                self._concurrency.release(too_many=too_many)
                record_dataverse_request(kind, None if response is None else response.status_code)
            self._note_dop_hint(response)
            if response.status_code < 400:
                # For callers that read per-part outcomes ($batch): an earlier attempt may have landed.
                response.earlier_attempt_unanswered = unanswered  # type: ignore[attr-defined]
                return response
            error = error_from_response(response.status_code, response.headers, response.content)
            error.earlier_attempt_unanswered = unanswered
            if response.status_code == 401 and not reauthenticated:
                self._tokens.invalidate()
                reauthenticated = True
                continue
            if isinstance(error, D365RateLimitError):
                logger.warning(
                    "d365_rate_limit kind=%s retry_after=%s service_request_id=%s",
                    kind,
                    error.retry_after,
                    error.request_id,
                    extra={"retry_after": error.retry_after, "kind": kind, "service_request_id": error.request_id},
                )
                if self._throttle is not None:
                    if error.code == CONCURRENCY_LIMIT_CODE:
                        self._throttle.on_concurrency_limited()
                    else:
                        self._throttle.on_rate_limited(error.retry_after)
                if (
                    error.retry_after <= self._inline_retry_after
                    and waited + error.retry_after <= 2 * self._inline_retry_after
                    and rate_limit_waits < MAX_RATE_LIMIT_WAITS
                    and self._fits(error.retry_after)
                ):
                    # Spread over the Retry-After: requests refused together must not come back together.
                    wait = error.retry_after * random.uniform(1.0, 1.5)
                    self._sleep(wait if self._fits(wait) else error.retry_after)
                    waited += error.retry_after
                    rate_limit_waits += 1
                    just_waited = True
                    continue
                raise error
            retryable = error.transient and response.status_code != 401  # a fresh token was refused too
            if retryable and self._may_retry(retries, kind, error):
                retries += 1
                continue
            _log_failure(kind, error)
            raise error

    def _timeout_now(self, kind: str) -> tuple[float, float]:
        """The (connect, read) timeout, cut to the time the deadline leaves."""
        left = deadline.remaining()
        if left is None:
            return self._timeout
        if left <= 0:
            raise D365DeadlineExceededError(f"{kind}: the deadline passed before the request was sent")
        return (min(self._timeout[0], left), min(self._timeout[1], left))

    @staticmethod
    def _fits(wait: float) -> bool:
        """Whether waiting `wait` seconds still leaves time to send before the deadline."""
        left = deadline.remaining()
        return left is None or wait < left

    def _note_dop_hint(self, response: requests.Response) -> None:
        hint = response.headers.get("x-ms-dop-hint")
        if hint and hint.isdigit() and int(hint) > 0:
            self._dop_hint = int(hint)

    def _may_retry(self, retries: int, kind: str, error: D365Error) -> bool:
        """Back off and say yes when another attempt is allowed and its wait fits the deadline."""
        delay = BACKOFF_BASE_SECONDS * BACKOFF_FACTOR**retries * random.uniform(0.8, 1.2)
        if retries >= self._max_retries or not self._fits(delay):
            return False
        logger.warning(
            "d365_retry kind=%s attempt=%s delay=%.2f service_request_id=%s error=%s",
            kind,
            retries + 1,
            delay,
            error.request_id,
            error,
            extra={"kind": kind, "attempt": retries + 1, "service_request_id": error.request_id},
        )
        self._sleep(delay)
        return True


def _too_many_concurrent(response: requests.Response) -> bool:
    return response.status_code == 429 and CONCURRENCY_LIMIT_CODE.encode() in response.content


def _check_deadline(kind: str) -> None:
    if deadline.expired():
        raise D365DeadlineExceededError(f"{kind}: the deadline passed before the request was sent")


def _log_failure(kind: str, error: D365Error) -> None:
    # 404 and 412 are answers the write protocol expects (a stale id, a create that already landed).
    level = logging.INFO if error.status in (404, 412) else logging.WARNING
    logger.log(
        level,
        "d365_request_failed kind=%s status=%s code=%s service_request_id=%s: %s",
        kind,
        error.status,
        error.code,
        error.request_id,
        error,
        extra={
            "kind": kind,
            "http_status": error.status,
            "error_code": error.code,
            "service_request_id": error.request_id,
        },
    )


def _as(kind: type[D365Error], error: D365Error) -> D365Error:
    """`error` as the more precise `kind` (same status, code, message and request id)."""
    if isinstance(error, kind):
        return error
    return kind(error.message, status=error.status, code=error.code, request_id=error.request_id)


def _etag(response: requests.Response) -> str:
    """The record's ETag from a write or read answer: the header, else the body's @odata.etag."""
    etag = response.headers.get("ETag")
    if not etag:
        try:
            body = response.json()
        except ValueError:
            body = None
        etag = body.get("@odata.etag") if isinstance(body, dict) else None
    if not isinstance(etag, str) or not etag:
        raise D365APIError("Dataverse answered without an ETag", status=response.status_code)
    return etag


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
