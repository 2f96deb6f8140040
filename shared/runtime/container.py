"""Builds the app's dependencies once per worker process, lazily, from the validated settings.

The one place that wires adapters to use cases. Tests and the simulation use it too: `Overrides`
hands it in-memory fakes of the ports and a clock the test moves, and the rest is wired as in
production.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.identity import ManagedIdentityCredential

from d365.auth import build_token_provider
from d365.client import DataverseClient
from d365.mapping import load_choice_overrides
from d365.schema_cache import SchemaCache
from d365.throttle import ThrottleGate
from shared.model.errors import StoreUnavailable
from shared.model.ports import LeadQueuePort, LeadTable, SyncStore
from shared.postgres.connect import EntraPassword, PostgresConnector
from shared.postgres.store import LeadStore
from shared.runtime.settings import DatabaseAuth, Settings
from shared.storage.queue import LeadQueues
from shared.usecases.push import LeadPusher
from shared.writes.bulk_crm import BatchCrm
from shared.writes.bulk_writer import BulkPolicy, BulkWriter
from shared.writes.known_record import CrmPolicy
from shared.writes.lead_writer import LeadWriter
from shared.writes.ownership import ColumnOwnership

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Clock:
    """Where time and chance come from: the system's, or a test's."""

    now: Callable[[], float] = time.time  # epoch seconds, comparable across instances
    elapsed: Callable[[], float] = time.perf_counter  # for durations and deadlines
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None


@dataclass(frozen=True)
class Overrides:
    """Dependencies given instead of built from the settings (fakes of the ports, a test's clock)."""

    store: SyncStore | None = None
    queues: LeadQueuePort | None = None
    dataverse: LeadTable | None = None
    throttle: ThrottleGate | None = None  # the gate `dataverse` was built with, to share it
    clock: Clock = Clock()


def postgres_connector(settings: Settings) -> PostgresConnector:
    """New connections to DATABASE_URL, signed in as DATABASE_AUTH says."""
    if settings.database_auth is DatabaseAuth.MANAGED_IDENTITY:
        credential = ManagedIdentityCredential(client_id=settings.dataverse.managed_identity_client_id)
        return PostgresConnector(settings.database_url, password=EntraPassword(credential))
    return PostgresConnector(settings.database_url)


def shared_throttle_gate(store: SyncStore, settings: Settings, clock: Clock = Clock()) -> ThrottleGate:
    """This process's view of Dataverse's throttling, shared with every instance through the store
    (kept to this process with DATAVERSE_SHARED_BACKOFF=false)."""

    def publish(until_epoch: float, scope: str = "dataverse") -> None:
        try:
            store.publish_throttle(datetime.fromtimestamp(until_epoch, tz=UTC), scope=scope)
        except StoreUnavailable as exc:  # the 429 is still honoured in this process
            logger.warning("d365_throttle_unpublished: %s", exc)

    def read() -> tuple[float | None, float | None]:
        marks = store.throttle_marks()
        until, cut_at = (marks.get(scope) for scope in ("dataverse", "concurrency"))
        return (until.timestamp() if until else None, cut_at.timestamp() if cut_at else None)

    shared = settings.dataverse_shared_backoff
    return ThrottleGate(
        inline_wait_seconds=settings.dataverse.inline_retry_after_seconds,
        publish=publish if shared else None,
        publish_cut=(lambda at: publish(at, "concurrency")) if shared else None,
        refresh=read if shared else None,
        clock=clock.now,
        sleep=clock.sleep,
        rng=clock.rng,
    )


class Container:
    """Each dependency is built on first use, once, even when worker threads ask at the same time.
    Nothing here touches the network when built: the schema is migrated by
    `python -m shared.postgres.migrate`, run before the app starts, never by the first request a
    worker serves."""

    def __init__(self, settings: Settings, overrides: Overrides = Overrides()) -> None:
        """Raises ChoiceOverridesError for a bad overrides file: a start-up error, like a bad setting."""
        self.settings = settings
        self._overrides = overrides
        path = settings.dataverse.choice_overrides_file
        self.choice_overrides = load_choice_overrides(path) if path else None
        self._built: dict[str, Any] = {}
        self._lock = threading.RLock()

    def _get(self, name: str, build: Callable[[], Any]) -> Any:
        with self._lock:
            if name not in self._built:
                self._built[name] = build()
            return self._built[name]

    @property
    def store(self) -> SyncStore:
        return self._overrides.store or self._get(
            "store",
            lambda: LeadStore(
                connect=postgres_connector(self.settings).connect, pool_max=self.settings.database_pool_max
            ),
        )

    @property
    def queues(self) -> LeadQueuePort:
        return self._overrides.queues or self._get(
            "queues", lambda: LeadQueues(self.settings.storage, self.settings.lead_queue_name)
        )

    @property
    def throttle(self) -> ThrottleGate:
        return self._overrides.throttle or self._get(
            "throttle", lambda: shared_throttle_gate(self.store, self.settings, self._overrides.clock)
        )

    @property
    def dataverse(self) -> LeadTable:
        return self._overrides.dataverse or self._get("dataverse", self._dataverse_client)

    def _dataverse_client(self) -> DataverseClient:
        config = self.settings.dataverse
        return DataverseClient(
            config.url,
            build_token_provider(config),
            api_version=config.api_version,
            timeout=config.timeout_seconds,
            inline_retry_after=config.inline_retry_after_seconds,
            throttle=self.throttle,
        )

    def _bulk_writer(self) -> BulkWriter | None:
        config = self.settings.dataverse
        if config.bulk_size < 2:
            return None
        client = self.dataverse
        return BulkWriter(
            client,
            alternate_key=config.alternate_key,
            match_columns=config.match_columns,
            policy=BulkPolicy(config.bulk_size, dop_hint=lambda: client.dop_hint),
        )

    @property
    def schema(self) -> SchemaCache:
        config = self.settings.dataverse
        return self._get(
            "schema",
            lambda: SchemaCache(
                self.dataverse.read_lead_schema,
                ttl_seconds=config.metadata_ttl_seconds,
                failure_ttl_seconds=config.metadata_failure_ttl_seconds,
                clock=self._overrides.clock.elapsed,
            ),
        )

    @property
    def _ownership(self) -> ColumnOwnership:
        return ColumnOwnership(self.settings.hunter_owned_columns)

    @property
    def _crm_policy(self) -> CrmPolicy:
        return CrmPolicy(self.settings.closed_leads, self.settings.deleted_leads)

    @property
    def pusher(self) -> LeadPusher:
        config = self.settings.dataverse
        clock = self._overrides.clock
        return self._get(
            "pusher",
            lambda: LeadPusher(
                store=self.store,
                writer=LeadWriter(
                    self.dataverse,
                    alternate_key=config.alternate_key,
                    match_columns=config.match_columns,
                    ownership=self._ownership,
                    crm_policy=self._crm_policy,
                ),
                schema=self.schema,
                choice_overrides=self.choice_overrides,
                max_dequeue_count=self.settings.queue_runtime.max_dequeue_count,
                lease_seconds=self.settings.lead_lease_seconds,
                inline_wait_seconds=config.inline_retry_after_seconds,
                throttle=self.throttle if self.settings.dataverse_shared_backoff else None,
                bulk=self._bulk_writer(),
                batch_crm=BatchCrm(self.dataverse, self._ownership, self._crm_policy),
                clock=clock.elapsed,
                rng=clock.rng,
                probe_seconds=config.pause_probe_seconds,
            ),
        )
