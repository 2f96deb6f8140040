"""The push as the app's container wires it, over the fakes: one `LeadPusher` (with its own
writer and schema cache, as one worker process has) on a shared store and Dataverse."""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from d365.config import DEFAULT_MATCH_COLUMNS
from d365.metadata import LeadSchema
from d365.schema_cache import SchemaCache
from d365.throttle import ThrottleGate
from shared.writes.bulk_writer import BulkPolicy, BulkWriter
from shared.writes.lead_writer import LeadWriter
from shared.usecases.push import LeadPusher
from tests.fakes.clock import FakeClock
from tests.fakes.dataverse import FakeDataverse
from tests.fakes.store import FakeLeadStore

LEASE_SECONDS = 120.0
MAX_DEQUEUE_COUNT = 5
INLINE_WAIT_SECONDS = 5.0


def throttle_gate(store: FakeLeadStore, clock: FakeClock, rng: random.Random | None = None) -> ThrottleGate:
    """A process's gate, sharing "throttled until" through the store as the container wires it, on
    the fake clock (and a seeded random for its jitter)."""

    def publish(at: float, scope: str = "dataverse") -> None:
        store.publish_throttle(datetime.fromtimestamp(at, UTC), scope=scope)

    def read() -> tuple[float | None, float | None]:
        marks = store.throttle_marks()
        until, cut_at = (marks.get(scope) for scope in ("dataverse", "concurrency"))
        return (until.timestamp() if until else None, cut_at.timestamp() if cut_at else None)

    return ThrottleGate(inline_wait_seconds=INLINE_WAIT_SECONDS, clock=clock, sleep=clock.sleep, publish=publish,
                        publish_cut=lambda at: publish(at, "concurrency"), refresh=read, rng=rng or random.Random(0))


def build_pusher(*, store: FakeLeadStore, dataverse: FakeDataverse, clock: FakeClock,
                 throttle: ThrottleGate | None = None, schema_loader: Callable[[], LeadSchema] | None = None,
                 alternate_key: str | None = None, match_columns: Sequence[str] = DEFAULT_MATCH_COLUMNS,
                 lease_seconds: float = LEASE_SECONDS, rng: random.Random | None = None,
                 bulk_size: int = 1) -> tuple[LeadPusher, SchemaCache]:
    """`bulk_size` > 1 writes a backlog in bulk, as D365_BULK_SIZE does (the container's default is 100)."""
    schema = SchemaCache(schema_loader or dataverse.read_lead_schema, ttl_seconds=3600, clock=clock)
    bulk = None
    if bulk_size > 1:
        bulk = BulkWriter(dataverse, alternate_key=alternate_key, match_columns=match_columns,  # type: ignore[arg-type]
                          policy=BulkPolicy(bulk_size, dop_hint=lambda: dataverse.dop_hint))
    pusher = LeadPusher(
        store=store,  # type: ignore[arg-type]
        writer=LeadWriter(dataverse, alternate_key=alternate_key, match_columns=match_columns),  # type: ignore[arg-type]
        schema=schema, choice_overrides=None, max_dequeue_count=MAX_DEQUEUE_COUNT, lease_seconds=lease_seconds,
        inline_wait_seconds=INLINE_WAIT_SECONDS, throttle=throttle, bulk=bulk, clock=clock,
        rng=rng or random.Random(0))
    return pusher, schema
