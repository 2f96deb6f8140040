"""CreateMultiple, UpdateMultiple and UpsertMultiple bound to `leads` (docs/dataverse.md 7.2).

On a standard table one failing target fails the whole request and nothing is written: the targets are
written one by one through the store's ordinary writes (same validation, keys and reject rules as single
writes) inside one store transaction. The error answered is the failing target's own error (status, code,
message), as Dataverse answers for standard tables. With `Prefer: odata.include-annotations="*"` (or
`...=Microsoft.PowerApps.CDS.ErrorDetails.*`) the error also carries
`@Microsoft.PowerApps.CDS.ErrorDetails.BulkApiErrorDetails`, the JSON text
`[{"RequestIndex": i, "Id": "<leadid or key>", "StatusCode": s}]` naming the failing target; Dataverse
documents that annotation for elastic tables only, so for `lead` it is [UNCONFIRMED] and easy to drop here.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from local.emulators.dataverse.errors import (
    ENTITY,
    ENTITY_TYPE,
    INVALID_ARGUMENT,
    NOT_FOUND,
    ODataError,
    payload_error,
)
from local.emulators.dataverse.odata_filter import fold
from local.emulators.dataverse.payload import parse_values
from local.emulators.dataverse.schema import PRIMARY_KEY, Schema
from local.emulators.dataverse.store import LeadStore
from local.emulators.dataverse.urlkeys import KeySegment, parse_guid, parse_key_segment

ACTIONS = ("CreateMultiple", "UpdateMultiple", "UpsertMultiple")
ACTION_PREFIX = "Microsoft.Dynamics.CRM."
ERROR_DETAILS = "@Microsoft.PowerApps.CDS.ErrorDetails.BulkApiErrorDetails"
# [UNCONFIRMED] codes: the documented texts come without a code, or the code is not documented.
NOT_SUPPORTED = "0x80040800"
UNEXPECTED = "0x80040216"
_TYPE_NAMES = (ENTITY_TYPE, "#" + ENTITY_TYPE)


class BulkSupport:
    """Whether the org answers as one that supports the bulk messages for `lead` (a control-API switch)."""

    def __init__(self, supported: bool = True) -> None:
        self.initial = supported
        self.supported = supported

    def reset(self) -> None:
        self.supported = self.initial


class TargetError(Exception):
    """Target `index` (named `name`) failed with `error`; the whole request fails with it."""

    def __init__(self, index: int, name: str, error: ODataError) -> None:
        super().__init__(error.message)
        self.index = index
        self.name = name
        self.error = error

    def body(self, with_details: bool) -> dict:
        body = self.error.body()
        if with_details:
            detail = [{"RequestIndex": self.index, "Id": self.name, "StatusCode": self.error.status}]
            body["error"][ERROR_DETAILS] = json.dumps(detail)
        return body


@dataclass(frozen=True)
class Outcome:
    """What a successful bulk action answers: `ids` for CreateMultiple (None otherwise), and how many
    targets it wrote."""

    ids: list[str] | None
    count: int


def run(action: str, body: Any, store: LeadStore, support: BulkSupport) -> Outcome:
    """Run `action` with the request body `body` (already JSON-decoded).

    Raises ODataError for a request-level error (unsupported message, malformed Targets) and TargetError
    when a target fails; in both cases nothing is written.
    """
    if not support.supported:
        raise ODataError(
            400,
            NOT_SUPPORTED,
            f"The '{action}' method does not support entities of type '{ENTITY}'. "
            "MessageProcessorCache returned MessageProcessor.Empty.",
        )
    targets = _targets(body)
    with store.transaction():
        if action == "CreateMultiple":
            return Outcome(_create(targets, store), len(targets))
        if action == "UpdateMultiple":
            return Outcome(None, _update(targets, store))
        return Outcome(None, _upsert(targets, store))


def _targets(body: Any) -> list[dict]:
    if not isinstance(body, dict) or not isinstance(body.get("Targets"), list):
        raise payload_error("Microsoft.OData.ODataException: The parameter 'Targets' is missing or not a collection.")
    targets = body["Targets"]
    for index, target in enumerate(targets):
        if not isinstance(target, dict):
            raise payload_error(f"Microsoft.OData.ODataException: Targets[{index}] is not an entity.")
        kind = target.get("@odata.type")
        if kind is None:
            raise payload_error(
                f"Microsoft.OData.ODataException: Targets[{index}] has no '@odata.type' annotation; every item "
                "of an abstract-typed collection must name its type."
            )
        if kind not in _TYPE_NAMES:
            raise payload_error(
                f"Microsoft.OData.ODataException: Targets[{index}] is of type '{kind}', expected '{ENTITY_TYPE}'."
            )
    return targets


def _values(schema: Schema, target: dict, *, creating: bool) -> dict[str, Any]:
    values = parse_values(schema, target, creating=creating)
    if values.get(PRIMARY_KEY) is not None:
        lead_id = parse_guid(str(values[PRIMARY_KEY]))
        if lead_id is None:
            raise payload_error(f"Microsoft.OData.ODataException: Cannot convert the literal "
                                f"'{values[PRIMARY_KEY]}' to the expected type 'Edm.Guid'.")
        values[PRIMARY_KEY] = lead_id
    return values


def _create(targets: list[dict], store: LeadStore) -> list[str]:
    ids = []
    for index, target in enumerate(targets):
        try:
            record = store.create(_values(store.schema, target, creating=True))
        except ODataError as error:
            raise TargetError(index, str(target.get(PRIMARY_KEY) or ""), error) from None
        ids.append(record[PRIMARY_KEY])
    return ids


def _update(targets: list[dict], store: LeadStore) -> int:
    seen: set[str] = set()
    written = 0
    for index, target in enumerate(targets):
        name = str(target.get(PRIMARY_KEY) or "")
        try:
            values = _values(store.schema, target, creating=False)
            lead_id = values.get(PRIMARY_KEY)
            if lead_id is None:
                # Alternate keys are not supported with UpdateMultiple over the Web API (docs/dataverse.md 7.2).
                raise ODataError(400, INVALID_ARGUMENT, f"Targets[{index}]: the {PRIMARY_KEY} column is required "
                                                        "by UpdateMultiple.")
            if lead_id in seen:  # only the first of repeated records is applied
                continue
            seen.add(lead_id)
            try:
                store.upsert(KeySegment(lead_id, lead_id=lead_id), values, if_match="*", if_none_match=None)
            except ODataError as error:
                if error.code == NOT_FOUND:
                    raise ODataError(404, NOT_FOUND, f"{ENTITY} With Ids = {lead_id} Do Not Exist") from None
                raise
        except ODataError as error:
            raise TargetError(index, name, error) from None
        written += 1
    return written


def _upsert(targets: list[dict], store: LeadStore) -> int:
    segments = [_segment(index, target) for index, target in enumerate(targets)]
    first: dict[tuple, int] = {}
    for index, segment in enumerate(segments):
        if segment is None:
            continue
        identity = _identity(segment)
        if identity in first:
            raise TargetError(index, segment.text, ODataError(
                400, UNEXPECTED, f"Targets[{first[identity]}] and Targets[{index}] refer to the same record "
                                 f"({segment.text}); UpsertMultiple needs each record once."))
        first[identity] = index
    for index, (target, segment) in enumerate(zip(targets, segments, strict=True)):
        name = segment.text if segment is not None else ""
        try:
            values = _values(store.schema, target, creating=segment is None)
            if segment is None:
                store.create(values)
                continue
            _, created = store.upsert(segment, values, if_match=None, if_none_match=None)
            if created and segment.values and any(column in target for column, _ in segment.values):
                # The key named in @odata.id repeated in the body fails the create path (docs/dataverse.md 7.2).
                raise ODataError(400, UNEXPECTED, "An unexpected error occurred.")
        except ODataError as error:
            raise TargetError(index, name, error) from None
    return len(targets)


def _segment(index: int, target: dict) -> KeySegment | None:
    """The record a target names: `@odata.id` (`leads(<key>)`, relative or absolute) or its `leadid`."""
    reference = target.get("@odata.id")
    try:
        if reference is not None:
            text = str(reference)
            start = text.find("leads(")
            if start < 0 or not text.endswith(")"):
                raise payload_error(f"Microsoft.OData.ODataException: The @odata.id '{text}' is not a lead reference.")
            return parse_key_segment(text[start + len("leads(") : -1])
        lead_id = target.get(PRIMARY_KEY)
        if lead_id is None:
            return None
        guid = parse_guid(str(lead_id))
        if guid is None:
            raise payload_error(f"Microsoft.OData.ODataException: Cannot convert the literal '{lead_id}' to the "
                                "expected type 'Edm.Guid'.")
        return KeySegment(guid, lead_id=guid)
    except ODataError as error:
        raise TargetError(index, str(reference or target.get(PRIMARY_KEY) or ""), error) from None


def _identity(segment: KeySegment) -> tuple:
    if segment.lead_id is not None:
        return ("id", segment.lead_id)
    return ("key", tuple(sorted((name, fold(value)) for name, value in segment.values)))
