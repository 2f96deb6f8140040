"""Many leads in one request (issue 12): what a bulk target is, and how targets become an
`UpsertMultiple` body or the requests of a `$batch`, and a `$batch` answer per-target results.

Pure: the client sends what this builds. Every target names its record by id or by alternate
key; key columns never travel in the body (Dataverse fails the create path when they do,
docs/dataverse.md 7.2).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from d365.batch import BatchRequest, BatchResponse
from d365.errors import (
    KEY_VIOLATION_CODE,
    D365ConnectionError,
    D365DuplicateError,
    D365Error,
    D365PreconditionFailedError,
    D365RecordChangedError,
    error_from_response,
)
from d365.odata import key_segment

LEAD_TYPE = "Microsoft.Dynamics.CRM.lead"


@dataclass(frozen=True)
class BulkTarget:
    """One lead to write: `lead_id` (stored or deterministic) and/or its alternate `key`, and the
    columns to write. `etag` makes a `$batch` write an update at that version only (412 when the
    record changed); `UpsertMultiple` cannot carry one."""

    lead_id: str | None
    payload: Mapping[str, Any]
    key: Mapping[str, str | int] | None = None
    etag: str | None = None

    def __post_init__(self) -> None:
        if self.lead_id is None and not self.key:
            raise ValueError("a bulk target needs its lead_id or its alternate key")

    def body(self) -> dict[str, Any]:
        """The payload without the key columns."""
        key = self.key or {}
        return {column: value for column, value in self.payload.items() if column not in key}


@dataclass(frozen=True)
class BatchItemResult:
    """What the `$batch` answered for one target: the record's id, new ETag and whether it was
    created, or the target's own error."""

    target: BulkTarget
    lead_id: str | None = None
    etag: str | None = None
    created: bool = False
    error: D365Error | None = field(default=None)

    @property
    def ok(self) -> bool:
        return self.error is None


def upsert_multiple_body(targets: Sequence[BulkTarget]) -> dict[str, Any]:
    """`{"Targets": [...]}`: each with `@odata.type`, its `leadid` when known, and `@odata.id`
    (`leads(<key>)`) when it has a key. Raises ValueError for no targets or a target with an ETag."""
    if not targets:
        raise ValueError("UpsertMultiple needs at least one target")
    items = []
    for target in targets:
        if target.etag is not None:
            raise ValueError("UpsertMultiple cannot make a write conditional on an ETag; use a $batch")
        item: dict[str, Any] = {"@odata.type": LEAD_TYPE, **target.body()}
        if target.lead_id is not None:
            item["leadid"] = target.lead_id
        if target.key:
            item["@odata.id"] = f"leads{key_segment(target.key)}"
        items.append(item)
    return {"Targets": items}


def batch_requests(api: str, targets: Sequence[BulkTarget], *, guid: Any) -> list[BatchRequest]:
    """One `PATCH` per target (an upsert, or an update at the target's ETag), each answering the
    record's id and ETag. `guid` normalises an id for a URL (raising ValueError)."""
    requests = []
    for target in targets:
        if target.key:
            path = f"leads{key_segment(target.key)}"
            body = target.body() | ({"leadid": target.lead_id} if target.lead_id is not None else {})
        else:
            path, body = f"leads({guid(target.lead_id)})", target.body()
        headers = {"Content-Type": "application/json; charset=utf-8", "Prefer": "return=representation"}
        if target.etag is not None:
            headers["If-Match"] = target.etag
        requests.append(
            BatchRequest("PATCH", f"{api}/{path}?$select=leadid", headers, json.dumps(body).encode("utf-8"))
        )
    return requests


def batch_results(targets: Sequence[BulkTarget], responses: Sequence[BatchResponse]) -> list[BatchItemResult]:
    """Pair each target with its response, in order. A target left without a response (the batch
    stopped early) gets a transient error: its outcome is unknown."""
    results = []
    for index, target in enumerate(targets):
        if index >= len(responses):
            error = D365ConnectionError(f"batch: no answer for request {index + 1}")
            results.append(BatchItemResult(target, error=error))
            continue
        response = responses[index]
        if response.status >= 400:
            results.append(BatchItemResult(target, error=_item_error(target, response)))
            continue
        results.append(_item_success(target, response))
    return results


def _item_success(target: BulkTarget, response: BatchResponse) -> BatchItemResult:
    try:
        body = json.loads(response.body) if response.body else {}
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    lead_id = body.get("leadid") if isinstance(body.get("leadid"), str) else target.lead_id
    etag = response.header("ETag") or body.get("@odata.etag")
    return BatchItemResult(
        target, lead_id=lead_id, etag=etag if isinstance(etag, str) else None, created=response.status == 201
    )


def _item_error(target: BulkTarget, response: BatchResponse) -> D365Error:
    error = error_from_response(response.status, response.headers, response.body)
    if isinstance(error, D365PreconditionFailedError):
        changed = target.etag is not None and error.code != KEY_VIOLATION_CODE
        kind = D365RecordChangedError if changed else D365DuplicateError
        if not isinstance(error, kind):
            error = kind(error.message, status=error.status, code=error.code, request_id=error.request_id)
    return error
