"""The push as the app's container wires it, over the fakes: the real `Container` given the fake
store and Dataverse and the test's clock (one `LeadPusher`, with its own writer and schema cache,
as one worker process has)."""
from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from d365.config import DEFAULT_MATCH_COLUMNS, DataverseConfig
from d365.metadata import LeadSchema
from d365.schema_cache import SchemaCache
from d365.throttle import ThrottleGate
from shared.model.crm import ClosedLeads, DeletedLeads
from shared.model.ports import LeadTable
from shared.runtime.container import Clock, Container, Overrides, shared_throttle_gate
from shared.runtime.settings import QueueRuntime, Settings
from shared.storage.config import ConnectionStringStorage
from shared.usecases.push import LeadPusher
from tests.fakes.clock import FakeClock
from tests.fakes.dataverse import FakeDataverse
from tests.fakes.store import FakeLeadStore

LEASE_SECONDS = 120.0
MAX_DEQUEUE_COUNT = 5
INLINE_WAIT_SECONDS = 5

SETTINGS = Settings(
    storage=ConnectionStringStorage("UseDevelopmentStorage=true"),
    database_url="postgresql://fake@localhost/fake",
    dataverse=DataverseConfig(url="https://fake.crm.dynamics.com", metadata_ttl_seconds=3600,
                              inline_retry_after_seconds=INLINE_WAIT_SECONDS),
    hunter_allow_unsigned=True,
    lead_lease_seconds=int(LEASE_SECONDS),
    queue_runtime=QueueRuntime(max_dequeue_count=MAX_DEQUEUE_COUNT),
)


def _clock(clock: FakeClock, rng: random.Random | None) -> Clock:
    return Clock(now=clock, elapsed=clock, sleep=clock.sleep, rng=rng or random.Random(0))


def throttle_gate(store: FakeLeadStore, clock: FakeClock, rng: random.Random | None = None) -> ThrottleGate:
    """A process's gate, sharing "throttled until" through the store as the container wires it, on
    the fake clock (and a seeded random for its jitter)."""
    return shared_throttle_gate(store, SETTINGS, _clock(clock, rng))


class _SchemaFrom:
    """The fake Dataverse, with its metadata read by `loader` instead."""

    def __init__(self, dataverse: LeadTable, loader: Callable[[], LeadSchema]) -> None:
        self._dataverse = dataverse
        self.read_lead_schema = loader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._dataverse, name)


def build_pusher(*, store: FakeLeadStore, dataverse: LeadTable, clock: FakeClock,
                 throttle: ThrottleGate | None = None, schema_loader: Callable[[], LeadSchema] | None = None,
                 alternate_key: str | None = None, match_columns: Sequence[str] = DEFAULT_MATCH_COLUMNS,
                 lease_seconds: float = LEASE_SECONDS, rng: random.Random | None = None,
                 bulk_size: int = 1, closed_leads: str = "leave",
                 deleted_leads: str = "leave") -> tuple[LeadPusher, SchemaCache]:
    """`bulk_size` > 1 writes a backlog in bulk, as D365_BULK_SIZE does (the container's default is 100)."""
    settings = replace(
        SETTINGS,
        dataverse=replace(SETTINGS.dataverse, alternate_key=alternate_key, match_columns=tuple(match_columns),
                          bulk_size=bulk_size),
        lead_lease_seconds=lease_seconds,  # type: ignore[arg-type]
        dataverse_shared_backoff=throttle is not None,
        closed_leads=ClosedLeads(closed_leads),
        deleted_leads=DeletedLeads(deleted_leads),
    )
    table = dataverse if schema_loader is None else _SchemaFrom(dataverse, schema_loader)
    container = Container(settings, Overrides(store=store, dataverse=table, throttle=throttle,
                                              clock=_clock(clock, rng)))
    return container.pusher, container.schema
