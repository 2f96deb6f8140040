"""The fake Dataverse: a real `d365.client.DataverseClient`, retry policy included, over a
transport that answers each request in-process with the Dataverse emulator's own Web API
(`local.emulators.dataverse`), as httpx's `MockTransport` answers with a handler. The client's
rules therefore run once, in the client; the emulator's answers are the ones the contract tests
(tests/contract) hold to the emulator over HTTP.

What the emulator server does beside its Web API is the fake's to do: faults and the clock.
- Faults: `fail_next(...)` scripts the answer of the next request (of one kind, or any); `step`
  is the hook called before the first attempt of each request (`tests.fakes.faults`: the
  simulation's scheduler switches job, moves the clock or answers a fault there); `retry_fault`
  decides the faults of the attempts that follow. A fault is an error answer (a 429 with its
  Retry-After), a connection dropped before the request, or one dropped after it committed.
- Determinism: record ids and request ids come from a random seeded with `seed`, createdon and
  modifiedon from `clock`, the retries' jitter from another seeded random; the retries' waits
  move `clock` (or call `sleep`).
"""
from __future__ import annotations

import functools
import random
import uuid
from collections import Counter, OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from d365 import deadline
from d365.client import DataverseClient
from d365.errors import D365DeadlineExceededError, D365Error
from d365.throttle import ThrottleGate
from d365.transport import Headers, Request, Response, TransportError
from local.emulators.dataverse import people
from local.emulators.dataverse.bulk import BulkSupport
from local.emulators.dataverse.errors import PAYLOAD_ERROR, ODataError, unknown_property_form_as
from local.emulators.dataverse.inprocess import InProcessApi
from local.emulators.dataverse.payload import parse_values
from local.emulators.dataverse.schema import PRIMARY_KEY, Schema, profile_schema
from local.emulators.dataverse.store import LeadStore, Rule
from local.emulators.dataverse.webapi import Reply, error_reply, reply_headers
from tests.fakes.clock import FakeClock
from tests.fakes.faults import Fault, Step, no_step

BASE_URL = "https://fake.crm.dynamics.com"
_METADATA = "/EntityDefinitions"
_METADATA_ANSWERS_KEPT = 32
# SQL Server's uniqueidentifier order, as Dataverse sorts `leadid` (local/emulators/dataverse/ordering.py).
_GUID_BYTE_ORDER = (10, 11, 12, 13, 14, 15, 8, 9, 6, 7, 4, 5, 0, 1, 2, 3)


def guid_order(lead_id: str) -> bytes:
    raw = uuid.UUID(lead_id).bytes_le
    return bytes(raw[i] for i in _GUID_BYTE_ORDER)


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


class EmulatorTransport:
    """A `d365.transport.Transport` answered by the emulator's in-process Web API, after the fault
    `decide(kind, first_attempt)` chooses. Counts the requests it is handed, by kind."""

    def __init__(self, api: InProcessApi, *, decide: Callable[[str, bool], Fault | None],
                 new_id: Callable[[], str], unknown_column_code: Callable[[], str]) -> None:
        self.api = api
        self.calls: Counter[str] = Counter()
        self._decide = decide
        self._new_id = new_id
        self._unknown_column_code = unknown_column_code

    def send(self, request: Request, timeout: tuple[float, float]) -> Response:
        fault = self._decide(request.kind, request.attempt == 0)
        if deadline.expired():
            # The hook's pause (a scheduler's step) stands for time before the call: a deadline it
            # outlasted stops the request, as the client's own check would have.
            raise D365DeadlineExceededError(f"{request.kind}: the deadline passed before the request was sent")
        self.calls[request.kind] += 1
        if fault is not None and fault.drop == "before":
            raise TransportError("ConnectionError")
        if fault is not None and fault.status is not None:
            return self._response(error_reply(ODataError(fault.status, fault.code, fault.message),
                                              *_retry_after(fault.retry_after)))
        reply = self._metadata_answer(request) if _METADATA in request.url else None
        if reply is None:
            with unknown_property_form_as(self._unknown_column_code()):
                reply = self.api.handle(request.method, request.url, request.headers, request.body or b"")
        if fault is not None:  # dropped after it committed: the answer is lost
            raise TransportError("ConnectionError")
        return self._response(reply)

    def close(self) -> None:
        pass

    def _metadata_answer(self, request: Request) -> Reply:
        """The emulator's answer to a metadata read, a pure function of the schema: computed once per
        schema and URL for the whole test session (the client only reads it). Profiles share their
        schema object (`_profile_schema`), so every fake of a profile shares its answers."""
        schema = self.api.store.schema
        key = (id(schema), request.method, request.url)
        kept = _METADATA_ANSWERS.get(key)
        if kept is not None and kept[0] is schema:
            _METADATA_ANSWERS.move_to_end(key)
            return kept[1]
        reply = self.api.handle(request.method, request.url, request.headers, request.body or b"")
        if reply.status == 200:
            _METADATA_ANSWERS[key] = (schema, reply)  # the schema kept too: its id is not reused meanwhile
            if len(_METADATA_ANSWERS) > _METADATA_ANSWERS_KEPT:
                _METADATA_ANSWERS.popitem(last=False)
        return reply

    def _response(self, reply: Reply) -> Response:
        headers = Headers(reply_headers(reply, self._new_id()))
        if reply.body is None and reply.payload is not None:
            return Response(reply.status, headers, payload=reply.payload)
        return Response(reply.status, headers, reply.body or b"")


_METADATA_ANSWERS: OrderedDict[tuple[int, str, str], tuple[Schema, Reply]] = OrderedDict()


@functools.cache
def _profile_schema(profile: str, alternate_key: str | None) -> Schema:
    return profile_schema(profile, alternate_key)  # immutable: one object per profile serves every fake


def _retry_after(seconds: float | None) -> tuple[tuple[str, str], ...]:
    if seconds is None:
        return ()
    return (("Retry-After", str(int(seconds)) if float(seconds).is_integer() else str(seconds)),)


class FakeDataverse(DataverseClient):
    """The client's verbs, as `DataverseClient` has them, on an org a test sees and changes: `records`,
    `writes` and `on_write`, `calls` by kind, `add_record`, `add_rule`, `remove_column`,
    `bulk_supported`, `unknown_column_code`, and the faults; and a person's actions (`edit`, `qualify`,
    `disqualify`, `reopen`, `merge`, `delete`), the emulator's own (`people.py`, as its control API
    does them), each told to `on_write` as a write by nobody's job."""

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
        self.alternate_key = alternate_key
        self.tokens = tokens or FakeTokens()
        self.step = step
        self.retry_fault = retry_fault
        self.writes: list[Write] = []
        self.on_write: Callable[[Write], None] | None = None  # told of every write as it lands
        # The form of "no such column" in a body: "0x80048d19" (newer live form) or "0x0" (documented).
        self.unknown_column_code = PAYLOAD_ERROR
        self._script: list[tuple[str | None, Fault]] = []
        ids = random.Random(f"ids {seed}")
        new_id = lambda: str(uuid.UUID(int=ids.getrandbits(128), version=4))  # noqa: E731
        self._store = LeadStore(_profile_schema(profile, alternate_key), clock=self.clock.now, new_id=new_id,
                                on_write=self._landed)
        self._bulk = BulkSupport(True)
        self.transport = EmulatorTransport(InProcessApi(self._store, BASE_URL, self._bulk), decide=self._fault,
                                           new_id=new_id, unknown_column_code=lambda: self.unknown_column_code)
        self.calls = self.transport.calls  # requests sent, by kind (retries included)
        self._options: dict[str, Any] = {"inline_retry_after": inline_retry_after, "max_retries": max_retries,
                                         "sleep": sleep if sleep is not None else self.clock.sleep}
        super().__init__(BASE_URL, self.tokens, throttle=throttle, transport=self.transport,
                         rng=random.Random(f"jitter {seed}"), **self._options)

    def connect(self, *, rng: random.Random, throttle: ThrottleGate | None = None) -> DataverseClient:
        """Another worker process's client of this org: a client of its own (retry jitter from `rng`,
        concurrency limit, bulk-support answer), over the same records, faults and counts."""
        return DataverseClient(BASE_URL, self.tokens, throttle=throttle, transport=self.transport, rng=rng,
                               **self._options)

    # --- the org, as a test sees and changes it --------------------------------------------------------

    @property
    def records(self) -> Mapping[str, dict[str, Any]]:
        """The lead records by id (live, read only)."""
        return self._store.by_id

    @property
    def schema(self) -> Schema:
        return self._store.schema

    @property
    def bulk_supported(self) -> bool:
        """Whether the org has CreateMultiple/UpdateMultiple for lead (the client asks once)."""
        return self._bulk.supported

    @bulk_supported.setter
    def bulk_supported(self, supported: bool) -> None:
        self._bulk.supported = supported

    def fail_next(self, fault: Fault, *, kind: str | None = None, times: int = 1) -> None:
        """The next `times` requests (of `kind`, e.g. "update_lead", or any) meet `fault`."""
        self._script.extend([(kind, fault)] * times)

    def add_rule(self, column: str, equals: Any, *, status: int = 400, code: str = "0x80040265",
                 message: str = "Plug-in rejected the record") -> None:
        """Refuse every write whose resulting record has `column` == `equals` (a plug-in or business
        rule of the org)."""
        self._store.add_rule(Rule(column, equals, status, code, message))

    def remove_column(self, name: str) -> None:
        """The column is deleted from the org (and from every record)."""
        self._store.remove_column(name)

    def add_record(self, values: Mapping[str, Any], *, lead_id: str | None = None) -> str:
        """A record made by hand in the CRM (a random id, as Dataverse gives, unless `lead_id`)."""
        parsed = parse_values(self.schema, dict(values), creating=True)
        if lead_id is not None:
            parsed[PRIMARY_KEY] = lead_id
        return self._store.create(parsed)[PRIMARY_KEY]

    def edit(self, lead_id: str, values: Mapping[str, Any]) -> None:
        """A hand edit in the CRM: the record's version changes; `ownerid` (a GUID) assigns the lead.
        Raises ODataError as a Web API update would (404 when missing)."""
        people.edit(self._store, lead_id, values)

    def qualify(self, lead_id: str) -> None:
        """A person qualifies the open lead: statecode 1, statuscode 3. Raises ODataError (404, or 400 closed)."""
        people.qualify(self._store, lead_id)

    def disqualify(self, lead_id: str, status: int = 4) -> None:
        """A person disqualifies the lead: statecode 2, `status` 4 Lost, 5 Cannot Contact, 6 No Longer
        Interested or 7 Canceled. Raises ODataError (404, or 400 for another status)."""
        people.disqualify(self._store, lead_id, status)

    def reopen(self, lead_id: str) -> None:
        """A person reactivates the lead: statecode 0, statuscode 1. Raises ODataError (404)."""
        people.reopen(self._store, lead_id)

    def merge(self, subordinate_id: str, *, into: str) -> None:
        """A person merges `subordinate_id` into the master `into`: the subordinate is deactivated with
        merged true and `_masterid_value` the master; the master's version changes. Raises ODataError."""
        people.merge(self._store, subordinate_id, into)

    def delete(self, lead_id: str) -> None:
        if not self._store.delete_by_id(lead_id):
            raise KeyError(lead_id)

    # --- the transport's side ----------------------------------------------------------------------------

    def _fault(self, kind: str, first: bool) -> Fault | None:
        stepped = self.step(f"dataverse.{kind}") if first else None
        for i, (wanted, fault) in enumerate(self._script):
            if wanted in (None, kind):
                del self._script[i]
                return fault
        if first:
            return stepped
        return self.retry_fault(kind) if self.retry_fault is not None else None

    def _landed(self, record: dict[str, Any], created: bool) -> None:
        write = Write("create" if created else "update", record[PRIMARY_KEY], self.clock(), record, created)
        self.writes.append(write)
        if self.on_write is not None:
            self.on_write(write)
