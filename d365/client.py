"""A small client for the Dataverse Web API `lead` table.

Each verb builds a request (the OData headers, JSON body, `If-Match` and friends) and hands it to
the `RequestPolicy` (`d365.policy`: bounded retries, the shared throttle, the current deadline, one
token refresh), which sends it through a `Transport` (`d365.transport`; a pooled requests.Session
unless one is given). Every failure surfaces as a `d365.errors` type. URLs and request bodies are
never logged: they hold contact addresses.

Writes carry optimistic concurrency: `update_lead(..., etag=...)` sends `If-Match: <etag>` and a
412 becomes `D365RecordChangedError`; every write answers the record's new ETag.
"""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import requests

from d365 import batch
from d365.auth import TokenProvider
from d365.bulk import BatchItemResult, BulkTarget, batch_requests, batch_results, upsert_multiple_body
from d365.errors import (
    KEY_VIOLATION_CODE,
    D365APIError,
    D365DuplicateError,
    D365Error,
    D365PreconditionFailedError,
    D365RateLimitError,
    D365RecordChangedError,
)
from d365.metadata import LeadSchema, parse_lead_schema
from d365.odata import filter_eq_any, filter_in, key_segment, query_string
from d365.policy import RequestPolicy, RetryRules
from d365.throttle import ConcurrencyLimit, ThrottleGate
from d365.transport import Request, RequestsTransport, Response, Transport

DEFAULT_API_VERSION = "v9.2"
CONNECT_TIMEOUT_SECONDS = 5.0
LEAD_METADATA = "EntityDefinitions(LogicalName='lead')/Attributes"
# A stable order for lookups (issue 8): the oldest record first, the id breaking ties.
FIND_ORDER = "createdon asc,leadid asc"
BULK_MESSAGES = ("CreateMultiple", "UpdateMultiple")  # both supported = UpsertMultiple too (docs/dataverse.md 7.2)
FIND_PAGE_SIZE = 500
CHANGES_PAGE_SIZE = 5000  # Dataverse's largest page
CHANGES_ORDER = "modifiedon asc,leadid asc"
MAX_FIND_PAGES = 20
# The four reads the lead table's schema is made of: columns and types, choices, and max lengths.
SCHEMA_READS: tuple[tuple[str, dict[str, str]], ...] = (
    (LEAD_METADATA, {"$select": "LogicalName,AttributeType"}),
    (
        f"{LEAD_METADATA}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
        {"$select": "LogicalName", "$expand": "OptionSet,GlobalOptionSet"},
    ),
    (f"{LEAD_METADATA}/Microsoft.Dynamics.CRM.StringAttributeMetadata", {"$select": "LogicalName,MaxLength"}),
    (f"{LEAD_METADATA}/Microsoft.Dynamics.CRM.MemoAttributeMetadata", {"$select": "LogicalName,MaxLength"}),
)

_ODATA_HEADERS = {
    "Accept": "application/json",
    "OData-MaxVersion": "4.0",
    "OData-Version": "4.0",
}

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
        transport: Transport | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """`transport` replaces the pooled session (or the `session` given); `sleep` and `rng` are
        the retries' waiting and jitter. Raises ValueError when both a session and a transport are given."""
        if session is not None and transport is not None:
            raise ValueError("give a session or a transport, not both")
        self._api = f"{base_url.rstrip('/')}/api/data/{api_version}"
        self._transport = transport or (RequestsTransport(session) if session else RequestsTransport.pooled(self._api))
        self._throttle = throttle
        self._policy = RequestPolicy(
            self._transport,
            token_provider,
            timeout=(min(CONNECT_TIMEOUT_SECONDS, timeout), timeout),
            rules=RetryRules(max_retries=max_retries, inline_retry_after=inline_retry_after),
            sleep=sleep,
            rng=rng or random.Random(),
            throttle=throttle,
            concurrency=throttle.concurrency if throttle is not None else ConcurrencyLimit(max_concurrent),
        )
        self._bulk_support: bool | None = None
        self._bulk_support_lock = threading.Lock()

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far, retries included."""
        return self._policy.requests_sent

    @property
    def dop_hint(self) -> int | None:
        """The latest `x-ms-dop-hint` Dataverse sent: its recommended number of parallel requests."""
        return self._policy.dop_hint

    @property
    def throttle(self) -> ThrottleGate | None:
        return self._throttle

    def close(self) -> None:
        self._transport.close()

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
        return self.update_lead_returning(lead_id, payload, etag=etag)[0]

    def update_lead_returning(
        self, lead_id: str, payload: Mapping[str, Any], *, etag: str | None = None, select: Sequence[str] = ()
    ) -> tuple[str, dict]:
        """`update_lead`, answering also the record's `select` columns after the write (in the same
        request: `Prefer: return=representation`). Raises as `update_lead`."""
        try:
            response = self._request(
                "PATCH",
                f"leads({_guid(lead_id)})",
                query={"$select": ",".join(dict.fromkeys(["leadid", *select]))},
                body=payload,
                headers={"If-Match": etag or "*", "Prefer": "return=representation"},
                kind="update_lead",
            )
        except D365PreconditionFailedError as exc:
            if etag is None or exc.code == KEY_VIOLATION_CODE:
                raise _as(D365DuplicateError, exc) from exc
            raise _as(D365RecordChangedError, exc) from exc
        return _etag(response), _json(response)

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
            raise D365APIError("upsert answered without a leadid", status=response.status)
        return lead_id, _etag(response), response.status == 201

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
        found: list[dict] = []
        for number, page in enumerate(self._pages(query, page_size, kind="find_leads_in"), start=1):
            if number > MAX_FIND_PAGES:
                raise D365APIError(f"find_leads_in: more than {MAX_FIND_PAGES} pages of leads matched")
            found.extend(page)
        return found

    def changed_leads(
        self, since: str | None, *, select: Sequence[str], page_size: int = CHANGES_PAGE_SIZE
    ) -> Iterator[list[dict]]:
        """Pages of the leads modified at or after `since` (Dataverse's UTC form; None: all), oldest
        first with their `leadid`, `modifiedon` and `select` columns: one request per page.
        Raises D365Error."""
        query = {"$select": ",".join(dict.fromkeys(["leadid", "modifiedon", *select])), "$orderby": CHANGES_ORDER}
        if since is not None:
            query["$filter"] = f"modifiedon ge {since}"
        return self._pages(query, page_size, kind="changed_leads")

    def _pages(self, query: Mapping[str, str], page_size: int, *, kind: str) -> Iterator[list[dict]]:
        """The query's pages, following `@odata.nextLink` as Dataverse gives it."""
        headers = {"Prefer": f"odata.maxpagesize={page_size}"}
        link: str | None = "leads"
        first: Mapping[str, str] | None = query
        while link is not None:
            page = _json(self._request("GET", link, query=first, headers=headers, kind=kind))
            yield list(page.get("value", []))
            next_link = page.get("@odata.nextLink")
            link, first = (next_link if isinstance(next_link, str) else None), None

    def bulk_support(self, *, refresh: bool = False) -> bool:
        """Whether the org supports CreateMultiple and UpdateMultiple (hence UpsertMultiple) on
        `lead`, from `sdkmessagefilters`; asked once per client unless `refresh`. Raises D365Error."""
        with self._bulk_support_lock:  # one thread asks; the others wait for its answer
            if self._bulk_support is None or refresh:
                self._bulk_support = all(self._message_supported(message) for message in BULK_MESSAGES)
            return self._bulk_support

    def _message_supported(self, message: str) -> bool:
        query = _message_filter_query(message)
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
        headers = {"Prefer": "odata.continue-on-error"}
        request = build_request(
            "POST", self._api, "$batch", kind="batch", data=data, content_type=content_type, headers=headers
        )
        return _batch_results(targets, self._policy.send(request), self._throttle)

    def read_lead_schema(self) -> LeadSchema:
        """The lead table's columns, types, max lengths and choice options, in four GETs.
        Raises D365Error (D365APIError when a response is not metadata)."""
        bodies = [
            _json(self._request("GET", path, query=query, kind="read_lead_schema")) for path, query in SCHEMA_READS
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
    ) -> Response:
        """Send a request with a JSON body (or none) under the policy. Raises D365Error."""
        request = build_request(method, self._api, path, kind=kind, query=query, body=body, headers=headers)
        return self._policy.send(request)


def build_request(
    method: str,
    api: str,
    path: str,
    *,
    kind: str,
    query: Mapping[str, str] | None = None,
    body: Mapping[str, Any] | None = None,
    data: bytes | None = None,
    content_type: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Request:
    """A Web API request: `path` under `api` (an absolute `path` is a link Dataverse gave, e.g.
    @odata.nextLink, sent unchanged), a JSON `body` or raw `data`, the OData headers, and
    `If-None-Match: null` on a GET (a full answer, never a cached one)."""
    url = path if path.startswith(("https://", "http://")) else f"{api}/{path}"
    url += f"?{query_string(query)}" if query else ""
    request_headers = {**_ODATA_HEADERS, **(headers or {})}
    if body is not None:
        request_headers["Content-Type"] = "application/json; charset=utf-8"
        data = json.dumps(body).encode("utf-8")
    elif data is not None and content_type is not None:
        request_headers["Content-Type"] = content_type
    if method == "GET":
        request_headers["If-None-Match"] = "null"
    return Request(method, url, request_headers, data, kind)


def _message_filter_query(message: str) -> dict[str, str]:
    """The sdkmessagefilters row of `message` on `lead`: present when the org supports it."""
    return {
        "$select": "sdkmessagefilterid",
        "$filter": "sdkmessageid/name eq @message and primaryobjecttypecode eq @table",
        "@message": f"'{message}'",
        "@table": "'lead'",
    }


def _batch_results(
    targets: Sequence[BulkTarget], response: Response, throttle: ThrottleGate | None
) -> list[BatchItemResult]:
    """Each target's result from the `$batch` answer; a part's 429 is reported to the gate too."""
    try:
        responses = batch.parse(response.headers.get("Content-Type", ""), response.content)
    except ValueError as exc:
        raise D365APIError(f"$batch answer unreadable: {exc}", status=response.status) from exc
    results = batch_results(targets, responses)
    for result in results:
        if result.error is not None:
            result.error.earlier_attempt_unanswered = response.earlier_attempt_unanswered
            if isinstance(result.error, D365RateLimitError) and throttle is not None:
                throttle.on_rate_limited(result.error.retry_after)
    return results


def _as(kind: type[D365Error], error: D365Error) -> D365Error:
    """`error` as the more precise `kind` (same status, code, message and request id)."""
    if isinstance(error, kind):
        return error
    return kind(error.message, status=error.status, code=error.code, request_id=error.request_id)


def _etag(response: Response) -> str:
    """The record's ETag from a write or read answer: the header, else the body's @odata.etag."""
    etag = response.headers.get("ETag")
    if not etag:
        try:
            body = response.json()
        except ValueError:
            body = None
        etag = body.get("@odata.etag") if isinstance(body, dict) else None
    if not isinstance(etag, str) or not etag:
        raise D365APIError("Dataverse answered without an ETag", status=response.status)
    return etag


def _guid(lead_id: str) -> str:
    """The id as Dataverse writes it in a URL; raises ValueError for anything but a GUID."""
    return str(uuid.UUID(lead_id))


def _json(response: Response) -> dict:
    try:
        body = response.json()
    except ValueError as exc:
        raise D365APIError("response is not JSON", status=response.status) from exc
    if not isinstance(body, dict):
        raise D365APIError("response is not a JSON object", status=response.status)
    return body
