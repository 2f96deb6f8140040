"""One fixture per port, parametrized "fake" / "real": every contract test runs against the
in-memory fake and against the real adapter on real components (PostgreSQL, Azurite, the Dataverse
emulator), so the fakes cannot drift from what the app really meets.

Each harness offers the port and the few things a test needs to do beside it, done the right way
for each side: moving time (the fake clock; a real wait or a row changed by SQL), reading the
audit, scripting a fault.
"""
from __future__ import annotations

import contextlib
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg2
import psycopg2.extras
import pytest

from d365.auth import ManagedIdentityTokenProvider
from d365.client import DataverseClient
from shared.storage.queue import LeadQueues
from shared.postgres.store import LeadStore
from tests.fakes.clock import FakeClock
from tests.fakes.dataverse import FakeDataverse
from tests.fakes.faults import Fault
from tests.fakes.queues import FakeLeadQueues
from tests.fakes.store import FakeLeadStore

SIDES = ["fake", "real"]


def new_company_id() -> int:
    """Unique within the session's shared database."""
    return 10_000_000 + secrets.randbelow(1_000_000_000)


# --- store ---------------------------------------------------------------------------------------


@dataclass
class StoreHarness:
    store: Any
    side: str
    _expire: Callable[[int], None]
    _age: Callable[[int, float], None]
    _attempts: Callable[[int], list[dict]]
    _column: Callable[[int, str], Any]
    now: Callable[[], datetime]

    def expire_lease(self, company_id: int) -> None:
        """The lead's lease ran out (as if its holder crashed)."""
        self._expire(company_id)

    def age(self, company_id: int, seconds: float) -> None:
        """The row was last touched, and its message sent, `seconds` earlier than it says."""
        self._age(company_id, seconds)

    def attempts(self, company_id: int) -> list[dict]:
        """The lead's audit rows, oldest first, as {outcome, failure_class, error, d365_lead_id, ...}."""
        return self._attempts(company_id)

    def column(self, company_id: int, name: str) -> Any:
        """One column of the lead's row (lease_token, failed_version, d365_etag, ...)."""
        return self._column(company_id, name)


_ATTEMPT_FIELDS = ("outcome", "failure_class", "http_status", "error_code", "error", "d365_lead_id",
                   "dataverse_requests", "correlation_id", "dequeue_count", "service_request_id")


def _fake_store() -> StoreHarness:
    clock = FakeClock()
    store = FakeLeadStore(clock)

    def expire(company_id: int) -> None:
        row = store.rows[company_id]
        if row.lease_until is not None:
            row.lease_until = clock.now() - timedelta(seconds=1)

    def age(company_id: int, seconds: float) -> None:
        row = store.rows[company_id]
        row.updated_at -= timedelta(seconds=seconds)
        if row.enqueued_at is not None:
            row.enqueued_at -= timedelta(seconds=seconds)

    def attempts(company_id: int) -> list[dict]:
        return [{name: getattr(a, name) for name in _ATTEMPT_FIELDS} for a in store.attempts_of(company_id)]

    def column(company_id: int, name: str) -> Any:
        return getattr(store.rows[company_id], name)

    return StoreHarness(store, "fake", expire, age, attempts, column, clock.now)


def _real_store(database_url: str) -> Iterator[StoreHarness]:
    store = LeadStore(database_url, pool_max=2)
    conn = psycopg2.connect(database_url)
    conn.autocommit = True

    def sql(statement: str, params: dict, fetch: bool = False) -> Any:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(statement, params)
            return cur.fetchall() if fetch else None

    def expire(company_id: int) -> None:
        sql("UPDATE lead_sync SET lease_until = now() - interval '1 second' "
            "WHERE company_id = %(c)s AND lease_until IS NOT NULL", {"c": company_id})

    def age(company_id: int, seconds: float) -> None:
        sql("UPDATE lead_sync SET updated_at = updated_at - make_interval(secs => %(s)s), "
            "enqueued_at = enqueued_at - make_interval(secs => %(s)s) WHERE company_id = %(c)s",
            {"c": company_id, "s": seconds})

    def attempts(company_id: int) -> list[dict]:
        rows = sql("SELECT * FROM sync_attempt WHERE company_id = %(c)s ORDER BY id", {"c": company_id}, fetch=True)
        return [{name: (str(row[name]) if name == "d365_lead_id" and row[name] is not None else row[name])
                 for name in _ATTEMPT_FIELDS} for row in rows]

    def column(company_id: int, name: str) -> Any:
        if name not in {"lease_token", "lease_until", "failed_version", "synced_version", "d365_etag",
                        "queued_version", "synced_fingerprint", "enqueued_at", "updated_at", "status"}:
            raise ValueError(name)
        rows = sql(f"SELECT {name}::text AS value, {name} AS raw FROM lead_sync WHERE company_id = %(c)s",
                   {"c": company_id}, fetch=True)
        value = rows[0]["raw"]
        return str(value) if name == "lease_token" and value is not None else value

    def now() -> datetime:
        return sql("SELECT now() AS now", {}, fetch=True)[0]["now"]

    sql("DELETE FROM dataverse_throttle", {})  # an earlier test's throttling is not ours
    sql("DELETE FROM pipeline_pause", {})
    sql("UPDATE crm_outcome_reader SET lease_token = NULL, lease_until = NULL, modified_since = NULL", {})
    try:
        yield StoreHarness(store, "real", expire, age, attempts, column, now)
    finally:
        sql("DELETE FROM dataverse_throttle", {})  # the session's other tests must not see our throttling
        sql("DELETE FROM pipeline_pause", {})  # nor our pause
        conn.close()
        store.close()


@pytest.fixture(params=SIDES)
def store_side(request: pytest.FixtureRequest) -> Iterator[StoreHarness]:
    if request.param == "fake":
        yield _fake_store()
    else:
        yield from _real_store(request.getfixturevalue("database_url"))


# --- queues --------------------------------------------------------------------------------------


@dataclass
class Received:
    id: str
    pop_receipt: str
    text: str
    dequeue_count: int
    inserted_on: datetime


@dataclass
class QueueHarness:
    queues: Any
    side: str
    receive: Callable[[float], list[Received]]   # the runtime's receive, visibility timeout in seconds
    wait: Callable[[float], None]
    now: Callable[[], datetime]


def _fake_queues() -> QueueHarness:
    clock = FakeClock()
    queues = FakeLeadQueues(clock, queue_name=f"leads-{secrets.token_hex(4)}")

    def receive(visibility: float) -> list[Received]:
        return [Received(m.id, m.pop_receipt, m.text, m.dequeue_count, m.inserted_on)
                for m in queues.receive(max_messages=32, visibility_timeout=visibility)]

    return QueueHarness(queues, "fake", receive, clock.sleep, clock.now)


def _real_queues(connection_string: str) -> Iterator[QueueHarness]:
    name = f"contract-{secrets.token_hex(4)}"
    queues = LeadQueues(connection_string, name)

    def receive(visibility: float) -> list[Received]:
        return [Received(m.id, m.pop_receipt, m.content, m.dequeue_count, m.inserted_on)
                for m in queues.main.receive_messages(messages_per_page=32, max_messages=32,
                                                      visibility_timeout=int(visibility))]

    try:
        yield QueueHarness(queues, "real", receive, time.sleep, lambda: datetime.now(UTC))
    finally:
        for client in (queues.main, queues.poison):
            with contextlib.suppress(Exception):  # a queue never created
                client.delete_queue()


@pytest.fixture(params=SIDES)
def queue_side(request: pytest.FixtureRequest) -> Iterator[QueueHarness]:
    if request.param == "fake":
        yield _fake_queues()
    else:
        yield from _real_queues(request.getfixturevalue("azurite").connection_string)


# --- Dataverse -----------------------------------------------------------------------------------


class Sleeps(list):
    """Records each sleep instead of sleeping."""

    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@dataclass
class DataverseHarness:
    client: Any
    side: str
    sleeps: Sleeps
    add_record: Callable[[dict], str]          # a record made by hand in the CRM; its id
    records: Callable[[], list[dict]]
    fail_next: Callable[[list[Fault]], None]   # the next requests meet these faults, in order
    remove_column: Callable[[str], None]
    unknown_column_code: Callable[[str], None]  # the form of "no such column" in a body: 0x80048d19 or 0x0
    add_rule: Callable[..., None]               # (column, equals, status=, code=, message=): writes refused
    set_bulk_support: Callable[[bool], None]    # whether the org has the bulk messages for lead


def _fault_step(fault: Fault) -> dict:
    if fault.drop is not None:
        return {"drop": fault.drop}
    step: dict[str, Any] = {"status": fault.status, "code": fault.code, "message": fault.message}
    if fault.retry_after is not None:
        step["retry_after"] = int(fault.retry_after)
    return step


def _fake_dataverse(alternate_key: str | None) -> DataverseHarness:
    sleeps = Sleeps()
    fake = FakeDataverse(profile="mvp", alternate_key=alternate_key, sleep=sleeps)

    def fail_next(faults: list[Fault]) -> None:
        for fault in faults:
            fake.fail_next(fault)

    def unknown_column_code(code: str) -> None:
        fake.unknown_column_code = code

    return DataverseHarness(fake, "fake", sleeps, lambda values: fake.add_record(values),
                            lambda: [dict(r) for r in fake.records.values()], fail_next, fake.remove_column,
                            unknown_column_code, fake.add_rule,
                            lambda supported: setattr(fake, "bulk_supported", supported))


def _real_dataverse(request: pytest.FixtureRequest, alternate_key: str | None) -> Iterator[DataverseHarness]:
    identity = request.getfixturevalue("identity")
    monkeypatch: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", identity.header)
    emulator = request.getfixturevalue("dataverse")("mvp", alternate_key)
    sleeps = Sleeps()
    client = DataverseClient(emulator.url, ManagedIdentityTokenProvider(f"{emulator.url}/.default"), sleep=sleeps)
    client.read_lead_schema()  # the token is fetched once, before any scripted fault

    def add_record(values: dict) -> str:
        return emulator.control("POST", "leads", json=values)["leadid"]

    def fail_next(faults: list[Fault]) -> None:
        emulator.set_faults(script=[_fault_step(f) for f in faults])

    def remove_column(name: str) -> None:
        emulator.control("DELETE", f"schema/columns/{name}")

    try:
        yield DataverseHarness(client, "real", sleeps, add_record, emulator.leads, fail_next, remove_column,
                               lambda code: emulator.control("POST", "errors", json={"unknown_property": code}),
                               lambda column, equals, **refusal: emulator.control(
                                   "POST", "rules", json={"column": column, "equals": equals, **refusal}),
                               emulator.set_bulk_support)
    finally:
        client.close()


def dataverse_side_fixture(alternate_key: str | None) -> Callable[..., Iterator[DataverseHarness]]:
    @pytest.fixture(params=SIDES)
    def side(request: pytest.FixtureRequest) -> Iterator[DataverseHarness]:
        if request.param == "fake":
            yield _fake_dataverse(alternate_key)
        else:
            yield from _real_dataverse(request, alternate_key)

    return side


dataverse_side = dataverse_side_fixture(None)
keyed_dataverse_side = dataverse_side_fixture("hnt_domain")


def lead_id() -> str:
    return str(uuid.uuid4())
