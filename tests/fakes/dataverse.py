"""An in-memory `d365.client.DataverseClient` for the lead writer and the pusher: the lead table
as the Dataverse emulator keeps it, seen through the client's methods, raising what the client
raises against the emulator.

What it shares with the emulator, so the two cannot disagree: the profile's columns
(`local.emulators.dataverse.schema`), the validation of a body (`payload.parse_values`, with its
400 `0x80048d19` for an unknown column), and the metadata answers the schema is read from
(`metadata.read`, parsed by `d365.metadata.parse_lead_schema`). Errors go through
`d365.errors.error_from_response`, as the client's do, then through the client's own remapping of
412 (create: duplicate; update: record changed at an ETag, duplicate otherwise).

The client's call shape is kept too: the deadline (nothing sent once it has passed), the shared
`ThrottleGate`, bounded retries of dropped connections and 408/5xx answers, a short Retry-After
waited out inline, a 401 cured by one fresh token. A commit-then-drop write is applied, then
retried as the client retries it (so an update at an ETag meets its own write's 412).

Faults: `fail_next(...)` scripts the answer of the next request (of one kind, or any), `step` is
the hook called before each request (`tests.fakes.faults`), `retry_fault` decides the faults of
retried requests.
"""
from __future__ import annotations

import json
import random
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from d365 import deadline
from d365.bulk import BatchItemResult, BulkTarget
from d365.client import FIND_PAGE_SIZE, LEAD_METADATA
from d365.policy import BACKOFF_BASE_SECONDS, BACKOFF_FACTOR, MAX_RATE_LIMIT_WAITS
from d365.errors import (
    KEY_VIOLATION_CODE,
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
from d365.throttle import CONCURRENCY_LIMIT_CODE, ThrottleGate
from local.emulators.dataverse import metadata
from local.emulators.dataverse.bulk import NOT_SUPPORTED, UNEXPECTED
from local.emulators.dataverse.errors import (
    DUPLICATE_RECORD,
    KEY_NOT_DEFINED,
    KEY_VIOLATED,
    PAYLOAD_ERROR,
    QUERY_ERROR,
    VERSION_MISMATCH,
    ODataError,
    record_not_found,
    unknown_property,
)
from local.emulators.dataverse.payload import parse_values
from local.emulators.dataverse.schema import PRIMARY_KEY, AttributeType, Schema, profile_schema
from local.emulators.dataverse.store import FIRST_VERSION
from tests.fakes.clock import FakeClock
from tests.fakes.faults import Fault, Step, no_step

_BASE = "https://fake.crm.dynamics.com/api/data/v9.2"
# SQL Server's uniqueidentifier order, as Dataverse sorts `leadid` (local/emulators/dataverse/ordering.py).
_GUID_BYTE_ORDER = (10, 11, 12, 13, 14, 15, 8, 9, 6, 7, 4, 5, 0, 1, 2, 3)
_SCHEMA_READS = (
    (LEAD_METADATA, {"$select": "LogicalName,AttributeType"}),
    (f"{LEAD_METADATA}/Microsoft.Dynamics.CRM.PicklistAttributeMetadata",
     {"$select": "LogicalName", "$expand": "OptionSet,GlobalOptionSet"}),
    (f"{LEAD_METADATA}/Microsoft.Dynamics.CRM.StringAttributeMetadata", {"$select": "LogicalName,MaxLength"}),
    (f"{LEAD_METADATA}/Microsoft.Dynamics.CRM.MemoAttributeMetadata", {"$select": "LogicalName,MaxLength"}),
)


_METADATA_ANSWERS: dict[tuple[str, str | None, str], dict] = {}


def guid_order(lead_id: str) -> bytes:
    raw = uuid.UUID(lead_id).bytes_le
    return bytes(raw[i] for i in _GUID_BYTE_ORDER)


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def etag_of(record: Mapping[str, Any]) -> str:
    return f'W/"{record["versionnumber"]}"'


@dataclass(frozen=True)
class Write:
    """A write that landed: what, when (the clock's epoch seconds), and the values sent."""

    kind: str
    lead_id: str
    at: float
    values: Mapping[str, Any]
    created: bool


class FakeTokens:
    """A token provider whose next tokens can fail (D365AuthenticationError, transient or not)."""

    def __init__(self) -> None:
        self.failures: list[D365Error] = []
        self.invalidations = 0

    def get_token(self) -> str:
        if self.failures:
            raise self.failures.pop(0)
        return "fake.token"

    def invalidate(self) -> None:
        self.invalidations += 1


class FakeDataverse:
    def __init__(
        self,
        clock: FakeClock | None = None,
        *,
        profile: str = "mvp",
        alternate_key: str | None = None,
        throttle: ThrottleGate | None = None,
        tokens: FakeTokens | None = None,
        inline_retry_after: float = 5,
        max_retries: int = 2,
        sleep: Callable[[float], None] | None = None,
        step: Step = no_step,
        retry_fault: Callable[[str], Fault | None] | None = None,
        seed: int = 0,
    ) -> None:
        self.clock = clock or FakeClock()
        self.schema: Schema = profile_schema(profile, alternate_key)
        self._profile: tuple[str, str | None] | None = (profile, alternate_key)  # None once the schema changed
        self.alternate_key = alternate_key
        self.throttle = throttle
        self.tokens = tokens or FakeTokens()
        self._inline_retry_after = inline_retry_after
        self.max_retries = max_retries
        self._sleep = sleep if sleep is not None else self.clock.sleep
        self.step = step
        self.retry_fault = retry_fault
        self._rng = random.Random(seed)
        self._script: list[tuple[str | None, Fault]] = []
        self.rules: list[tuple[str, Any, ODataError]] = []
        self.bulk_supported = True  # whether the org has CreateMultiple/UpdateMultiple for lead
        self._bulk_support: bool | None = None  # what the client learnt (asked once, as the client does)
        self._pending: list[Write] | None = None  # writes of an all-or-nothing request, told once it commits
        self.records: dict[str, dict[str, Any]] = {}
        self._version = FIRST_VERSION
        self.writes: list[Write] = []
        self.on_write: Callable[[Write], None] | None = None  # told of every write as it lands
        self.calls: Counter[str] = Counter()  # HTTP requests sent, by kind (retries included)
        # The form of "no such column" in a body: "0x80048d19" (newer live form) or "0x0" (documented).
        self.unknown_column_code = PAYLOAD_ERROR
        self._lock = threading.RLock()

    # --- knobs ----------------------------------------------------------------------------------------

    def fail_next(self, fault: Fault, *, kind: str | None = None, times: int = 1) -> None:
        """The next `times` requests (of `kind`, e.g. "update_lead", or any) meet `fault`."""
        self._script.extend([(kind, fault)] * times)

    def add_rule(self, column: str, equals: Any, *, status: int = 400, code: str = "0x80040265",
                 message: str = "Plug-in rejected the record") -> None:
        """Refuse every write whose resulting record has `column` == `equals` (the emulator's rules:
        a plug-in or business rule of the org)."""
        self.rules.append((column, equals, ODataError(status, code, message)))

    def remove_column(self, name: str) -> None:
        """The column is deleted from the org (and from every record)."""
        with self._lock:
            self.schema = self.schema.without_column(name)
            self._profile = None
            for record in self.records.values():
                record.pop(name, None)

    def add_record(self, values: Mapping[str, Any], *, lead_id: str | None = None) -> str:
        """A record made by hand in the CRM (a random id, as Dataverse gives)."""
        with self._lock:
            lead_id = lead_id or self._new_id()
            self._insert(lead_id, parse_values(self.schema, dict(values), creating=True))
            return lead_id

    def edit(self, lead_id: str, values: Mapping[str, Any]) -> None:
        """A hand edit in the CRM: the record's version changes."""
        with self._lock:
            self._update(self.records[lead_id], parse_values(self.schema, dict(values), creating=False))

    def delete(self, lead_id: str) -> None:
        with self._lock:
            del self.records[lead_id]

    @property
    def requests_sent(self) -> int:
        return sum(self.calls.values())

    # --- the client's methods ---------------------------------------------------------------------------

    def create_lead(self, lead_id: str, payload: Mapping[str, Any]) -> str:
        lead_id = str(uuid.UUID(lead_id))
        try:
            record, _ = self._request("create_lead", lambda: self._upsert_id(lead_id, payload, if_none_match=True))
        except D365PreconditionFailedError as exc:
            raise _as(D365DuplicateError, exc) from exc
        return etag_of(record)

    def update_lead(self, lead_id: str, payload: Mapping[str, Any], *, etag: str | None = None) -> str:
        lead_id = str(uuid.UUID(lead_id))
        try:
            record, _ = self._request("update_lead",
                                      lambda: self._upsert_id(lead_id, payload, if_match=etag or "*"))
        except D365PreconditionFailedError as exc:
            if etag is None or exc.code == KEY_VIOLATION_CODE:
                raise _as(D365DuplicateError, exc) from exc
            raise _as(D365RecordChangedError, exc) from exc
        return etag_of(record)

    def upsert_lead_by_key(self, key: Mapping[str, str | int], payload: Mapping[str, Any]) -> tuple[str, str, bool]:
        body = {column: value for column, value in payload.items() if column not in key}
        record, created = self._request("upsert_lead", lambda: self._upsert_key(dict(key), body))
        return record[PRIMARY_KEY], etag_of(record), created

    def get_lead_etag(self, lead_id: str) -> str:
        lead_id = str(uuid.UUID(lead_id))
        return etag_of(self._request("get_lead_etag", lambda: self._get(lead_id)))

    def get_lead(self, lead_id: str, *, select: Sequence[str] | None = None) -> dict:
        lead_id = str(uuid.UUID(lead_id))

        def read() -> dict:
            record = self._get(lead_id)
            return self._render(record, self._check_columns(select) if select else list(self.schema.columns))

        return self._request("get_lead", read)

    def find_leads(self, matches: Sequence[tuple[str, str]], *, select: Sequence[str] = (), top: int = 5) -> list[dict]:
        """Case-insensitive `eq` on any match, `$orderby=createdon asc,leadid asc`, `$top`."""
        if not matches:
            return []
        columns = list(dict.fromkeys([PRIMARY_KEY, *(column for column, _ in matches), *select]))

        def query() -> list[dict]:
            self._check_columns(columns)
            wanted = [(column, _fold(value)) for column, value in matches]
            found = [r for r in self.records.values() if any(_fold(r.get(c)) == v for c, v in wanted)]
            found.sort(key=lambda r: (r["createdon"], guid_order(r[PRIMARY_KEY])))
            return [self._render(r, columns) for r in found[:top]]

        return self._request("find_leads", query)

    def read_lead_schema(self) -> LeadSchema:
        bodies = [self._request("read_lead_schema", lambda p=path, q=query: self._metadata(p, q))
                  for path, query in _SCHEMA_READS]
        return parse_lead_schema(*bodies)

    def _metadata(self, path: str, query: Mapping[str, str]) -> dict:
        """The emulator's answer; a profile's answers are computed once per test session (they are pure)."""
        if self._profile is None:
            return metadata.read(path, query, base=_BASE, schema=self.schema)
        key = (*self._profile, path)
        if key not in _METADATA_ANSWERS:
            _METADATA_ANSWERS[key] = metadata.read(path, query, base=_BASE, schema=self.schema)
        return _METADATA_ANSWERS[key]  # read only: parse_lead_schema never changes it

    # --- bulk (issue 12) ------------------------------------------------------------------------------

    @property
    def dop_hint(self) -> int | None:
        return 4  # the emulator's x-ms-dop-hint

    def bulk_support(self, *, refresh: bool = False) -> bool:
        """Two sdkmessagefilters reads, once (the client remembers the answer unless `refresh`)."""
        if self._bulk_support is None or refresh:
            answers = [self._request("bulk_support", lambda: self.bulk_supported) for _ in range(2)]
            self._bulk_support = all(answers)
        return self._bulk_support

    def upsert_multiple(self, targets: Sequence[BulkTarget]) -> None:
        """All or nothing, as on a standard table: the first failing target fails the request, its
        error naming it in `failed_indexes`."""
        if not targets:
            raise ValueError("UpsertMultiple needs at least one target")
        if any(target.etag is not None for target in targets):
            raise ValueError("UpsertMultiple cannot make a write conditional on an ETag; use a $batch")
        self._request("upsert_multiple", lambda: self._all_or_nothing(targets))

    def batch_write(self, targets: Sequence[BulkTarget]) -> list[BatchItemResult]:
        """One `$batch` of independent upserts (continue on error): a result per target."""
        if not 1 <= len(targets) <= 1000:
            raise ValueError("a $batch holds 1 to 1000 requests")
        return self._request("batch", lambda: [self._batch_item(target) for target in targets])

    def find_leads_in(self, column: str, values: Sequence[str], *, select: Sequence[str] = (),
                      page_size: int = FIND_PAGE_SIZE) -> list[dict]:
        return self.find_leads_in_any({column: values}, select=select, page_size=page_size)

    def find_leads_in_any(self, matches: Mapping[str, Sequence[str]], *, select: Sequence[str] = (),
                          page_size: int = FIND_PAGE_SIZE) -> list[dict]:
        """`Microsoft.Dynamics.CRM.In` on each column, ignoring case, oldest first, one request per page."""
        wanted = {column: {_fold(v) for v in values} for column, values in matches.items() if values}
        if not wanted:
            return []
        columns = list(dict.fromkeys([PRIMARY_KEY, *wanted, *select]))

        def query() -> list[dict]:
            self._check_columns(columns)
            found = [r for r in self.records.values() if any(_fold(r.get(c)) in v for c, v in wanted.items())]
            found.sort(key=lambda r: (r["createdon"], guid_order(r[PRIMARY_KEY])))
            return [self._render(r, columns) for r in found]

        found = self._request("find_leads_in", query)
        for _ in range(1, max(1, -(-len(found) // page_size))):
            self._request("find_leads_in", lambda: None)  # the next pages
        return found

    def close(self) -> None:
        pass

    # --- the client's call shape ------------------------------------------------------------------------

    def _request(self, kind: str, apply: Callable[[], Any]) -> Any:
        retries = rate_limit_waits = 0
        waited = 0.0
        reauthenticated = just_waited = unanswered = False
        first = True
        while True:
            fault = self._fault(kind, first)
            first = False
            if self.throttle is not None and not just_waited:
                self.throttle.before_request()
            just_waited = False
            if deadline.expired():
                raise D365DeadlineExceededError(f"{kind}: the deadline passed before the request was sent")
            self.tokens.get_token()
            self.calls[kind] += 1
            error: D365Error
            if fault is not None and fault.drop == "before":
                error = self._dropped(kind, unanswered)
                unanswered = True
                if self._may_retry(retries):
                    retries += 1
                    continue
                raise error
            if fault is not None and fault.status is not None:
                error = self._answer_error(ODataError(fault.status, fault.code, fault.message), fault.retry_after)
            else:
                try:
                    with self._lock:
                        result = apply()
                except ODataError as exc:
                    error = self._answer_error(exc, None)
                    if isinstance(exc, _TargetError):
                        error.failed_indexes = (exc.index,)
                else:
                    if fault is None:
                        return result
                    error = self._dropped(kind, unanswered)  # committed, answer lost
                    unanswered = True
                    if self._may_retry(retries):
                        retries += 1
                        continue
                    raise error
            error.earlier_attempt_unanswered = unanswered
            if error.status == 401 and not reauthenticated:
                self.tokens.invalidate()
                reauthenticated = True
                continue
            if isinstance(error, D365RateLimitError):
                if self.throttle is not None:
                    if error.code == CONCURRENCY_LIMIT_CODE:
                        self.throttle.on_concurrency_limited()
                    else:
                        self.throttle.on_rate_limited(error.retry_after)
                if (error.retry_after <= self._inline_retry_after
                        and waited + error.retry_after <= 2 * self._inline_retry_after
                        and rate_limit_waits < MAX_RATE_LIMIT_WAITS and _fits(error.retry_after)):
                    wait = error.retry_after * self._rng.uniform(1.0, 1.5)  # spread, as the client does
                    self._sleep(wait if _fits(wait) else error.retry_after)
                    waited += error.retry_after
                    rate_limit_waits += 1
                    just_waited = True
                    continue
                raise error
            if error.transient and error.status != 401 and self._may_retry(retries):
                retries += 1
                continue
            raise error

    def _fault(self, kind: str, first: bool) -> Fault | None:
        stepped = self.step(f"dataverse.{kind}") if first else None
        for i, (wanted, fault) in enumerate(self._script):
            if wanted in (None, kind):
                del self._script[i]
                return fault
        if first:
            return stepped
        return self.retry_fault(kind) if self.retry_fault is not None else None

    def _may_retry(self, retries: int) -> bool:
        delay = BACKOFF_BASE_SECONDS * BACKOFF_FACTOR**retries * self._rng.uniform(0.8, 1.2)
        if retries >= self.max_retries or not _fits(delay):
            return False
        self._sleep(delay)
        return True

    def _dropped(self, kind: str, unanswered: bool) -> D365Error:
        error = D365ConnectionError(f"{kind}: ConnectionError")
        error.earlier_attempt_unanswered = unanswered
        return error

    def _answer_error(self, exc: ODataError, retry_after: float | None) -> D365Error:
        headers = {"x-ms-service-request-id": str(uuid.UUID(int=self._rng.getrandbits(128), version=4))}
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after)) if float(retry_after).is_integer() else str(retry_after)
        body = json.dumps({"error": {"code": exc.code, "message": exc.message}}).encode()
        return error_from_response(exc.status, headers, body)

    # --- the table, as the emulator keeps it (lock held) --------------------------------------------

    def _new_id(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def _check_columns(self, names: Sequence[str]) -> list[str]:
        for name in names:
            if name not in self.schema.columns:
                raise unknown_property(name)
        return list(names)

    def _render(self, record: Mapping[str, Any], columns: Sequence[str]) -> dict:
        item: dict[str, Any] = {"@odata.etag": etag_of(record)}
        for name in columns:
            item[name] = record.get(name)
        item[PRIMARY_KEY] = record[PRIMARY_KEY]
        return item

    def _values(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The body's column values, as the emulator checks them (in the form of error chosen)."""
        try:
            return parse_values(self.schema, dict(body), creating=False)
        except ODataError as exc:
            _, found, inner = exc.message.partition("InnerException : ")
            if self.unknown_column_code == QUERY_ERROR and found and "Invalid property" in inner:
                raise ODataError(400, QUERY_ERROR,
                                 f"An error occurred while validating input parameters: {inner}") from None
            raise

    def _get(self, lead_id: str) -> dict:
        record = self.records.get(lead_id)
        if record is None:
            raise record_not_found(lead_id)
        return record

    def _upsert_id(self, lead_id: str, payload: Mapping[str, Any], *, if_match: str | None = None,
                   if_none_match: bool = False) -> tuple[dict, bool]:
        """PATCH leads(<id>) under If-Match or If-None-Match: *, as the emulator answers it."""
        values = self._values(payload)
        existing = self.records.get(lead_id)
        if existing is None:
            if if_match is not None:
                raise record_not_found(lead_id)
            return self._insert(lead_id, values), True
        if if_none_match:
            raise ODataError(412, DUPLICATE_RECORD, "A record with matching key values already exists.")
        if if_match not in (None, "*") and if_match.strip() != etag_of(existing):
            raise ODataError(412, VERSION_MISMATCH,
                             "The version of the existing record doesn't match the RowVersion property provided.")
        return self._update(existing, {k: v for k, v in values.items() if k != PRIMARY_KEY}), False

    def _upsert_key(self, key: dict[str, Any], body: Mapping[str, Any]) -> tuple[dict, bool]:
        """PATCH leads(<alternate key>) without conditions."""
        if self.alternate_key is None or set(key) != {self.alternate_key}:
            raise ODataError(400, KEY_NOT_DEFINED, "The specified key attributes are not a defined key for the "
                                                   "lead entity")
        column, value = self.alternate_key, key[self.alternate_key]
        if (self.schema.columns[column].attribute_type is AttributeType.STRING) != isinstance(value, str):
            raise ODataError(400, "0x0", f"The key value for '{column}' does not match the type of the column.")
        values = self._values(body)
        holder = next((r for r in self.records.values() if _fold(r.get(column)) == _fold(value)), None)
        if holder is None:
            return self._insert(self._new_id(), {**values, column: value}), True
        return self._update(holder, {k: v for k, v in values.items() if k not in (PRIMARY_KEY, column)}), False

    def _insert(self, lead_id: str, values: Mapping[str, Any]) -> dict:
        now = self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        record = {"statecode": 0, "statuscode": 1, **values, PRIMARY_KEY: lead_id, "createdon": now,
                  "modifiedon": now}
        self._commit(record, created=True)
        return record

    def _update(self, existing: dict, changes: Mapping[str, Any]) -> dict:
        record = {**existing, **changes, "modifiedon": self.clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")}
        self._commit(record, created=False)
        return record

    def _all_or_nothing(self, targets: Sequence[BulkTarget]) -> None:
        if not self.bulk_supported:
            raise ODataError(400, NOT_SUPPORTED, "The 'UpsertMultiple' method does not support entities of type "
                                                 "'lead'. MessageProcessorCache returned MessageProcessor.Empty.")
        seen: dict[tuple, int] = {}
        for index, target in enumerate(targets):
            identity = ("id", target.lead_id) if not target.key else ("key", tuple(
                sorted((c, _fold(v)) for c, v in target.key.items())))
            if identity in seen:
                raise _TargetError(index, ODataError(
                    400, UNEXPECTED, f"Targets[{seen[identity]}] and Targets[{index}] refer to the same record; "
                                     "UpsertMultiple needs each record once."))
            seen[identity] = index
        records, version, self._pending = dict(self.records), self._version, []
        try:
            for index, target in enumerate(targets):
                try:
                    self._write_target(target)
                except ODataError as exc:
                    raise _TargetError(index, exc) from None
        except BaseException:
            self.records, self._version = records, version
            self._pending = None
            raise
        pending, self._pending = self._pending, None
        for write in pending:
            self._told(write)

    def _write_target(self, target: BulkTarget, etag: str | None = None) -> tuple[dict, bool]:
        if target.key:
            return self._upsert_key(dict(target.key), target.body())
        assert target.lead_id is not None
        lead_id = str(uuid.UUID(target.lead_id))
        return self._upsert_id(lead_id, target.body(), if_match=etag)

    def _batch_item(self, target: BulkTarget) -> BatchItemResult:
        try:
            record, created = self._write_target(target, target.etag)
        except ODataError as exc:
            error = self._answer_error(exc, None)
            if isinstance(error, D365PreconditionFailedError):
                changed = target.etag is not None and error.code != KEY_VIOLATION_CODE
                error = _as(D365RecordChangedError if changed else D365DuplicateError, error)
            return BatchItemResult(target, error=error)
        return BatchItemResult(target, lead_id=record[PRIMARY_KEY], etag=etag_of(record), created=created)

    def _commit(self, record: dict, *, created: bool) -> None:
        lead_id = record[PRIMARY_KEY]
        if self.alternate_key is not None and record.get(self.alternate_key) is not None:
            value = _fold(record[self.alternate_key])
            if any(_fold(r.get(self.alternate_key)) == value for i, r in self.records.items() if i != lead_id):
                raise ODataError(412, KEY_VIOLATED,
                                 f"Entity Key {self.alternate_key}_key violated. A record with the same value for "
                                 f"{self.alternate_key} already exists. A duplicate record cannot be created.")
        for column, equals, refusal in self.rules:
            if record.get(column) == equals:
                raise refusal
        self._version += 1
        record["versionnumber"] = self._version
        self.records[lead_id] = record
        write = Write("create" if created else "update", lead_id, self.clock(), dict(record), created)
        if self._pending is not None:
            self._pending.append(write)
        else:
            self._told(write)

    def _told(self, write: Write) -> None:
        self.writes.append(write)
        if self.on_write is not None:
            self.on_write(write)


class _TargetError(ODataError):
    """A bulk target failed: the whole request fails with its error, naming it."""

    def __init__(self, index: int, error: ODataError) -> None:
        super().__init__(error.status, error.code, error.message)
        self.index = index


def _fits(wait: float) -> bool:
    left = deadline.remaining()
    return left is None or wait < left


def _as(kind: type[D365Error], error: D365Error) -> D365Error:
    """As the client's `_as`: `error` as the more precise `kind`."""
    if isinstance(error, kind):
        return error
    return kind(error.message, status=error.status, code=error.code, request_id=error.request_id)
