"""Builds the app's dependencies once per worker process, lazily, from the validated settings."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from d365.auth import build_token_provider
from d365.client import DataverseClient
from d365.mapping import load_choice_overrides
from d365.schema_cache import SchemaCache
from d365.throttle import ThrottleGate
from shared.model.errors import StoreUnavailable
from shared.postgres.connect import PostgresConnector
from shared.postgres.store import LeadStore
from shared.runtime.settings import Settings
from shared.storage.queue import LeadQueues
from shared.usecases.push import LeadPusher
from shared.writes.bulk_writer import BulkPolicy, BulkWriter
from shared.writes.lead_writer import LeadWriter

logger = logging.getLogger(__name__)


class Container:
    """Each dependency is built on first use, once, even when worker threads ask at the same time.
    Nothing here touches the network when built: the schema is migrated by `python -m shared.postgres.migrate`,
    run before the app starts, never by the first request a worker serves."""

    def __init__(self, settings: Settings) -> None:
        """Raises ChoiceOverridesError for a bad overrides file: a start-up error, like a bad setting."""
        self.settings = settings
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
    def store(self) -> LeadStore:
        return self._get(
            "store",
            lambda: LeadStore(
                connect=PostgresConnector.from_settings(self.settings).connect, pool_max=self.settings.database_pool_max
            ),
        )

    @property
    def queues(self) -> LeadQueues:
        return self._get("queues", lambda: LeadQueues(self.settings.storage, self.settings.lead_queue_name))

    @property
    def throttle(self) -> ThrottleGate:
        """This process's view of Dataverse's throttling, shared with every instance through PostgreSQL
        (kept to this process with DATAVERSE_SHARED_BACKOFF=false)."""
        shared = self.settings.dataverse_shared_backoff
        return self._get(
            "throttle",
            lambda: ThrottleGate(
                inline_wait_seconds=self.settings.dataverse.inline_retry_after_seconds,
                publish=self._publish_throttle if shared else None,
                publish_cut=self._publish_concurrency_cut if shared else None,
                refresh=self._read_throttle if shared else None,
            ),
        )

    def _publish_throttle(self, until_epoch: float, *, scope: str = "dataverse") -> None:
        try:
            self.store.publish_throttle(datetime.fromtimestamp(until_epoch, tz=UTC), scope=scope)
        except StoreUnavailable as exc:  # the 429 is still honoured in this process
            logger.warning("d365_throttle_unpublished: %s", exc)

    def _publish_concurrency_cut(self, at_epoch: float) -> None:
        self._publish_throttle(at_epoch, scope="concurrency")

    def _read_throttle(self) -> tuple[float | None, float | None]:
        marks = self.store.throttle_marks()
        until, cut_at = (marks.get(scope) for scope in ("dataverse", "concurrency"))
        return (until.timestamp() if until else None, cut_at.timestamp() if cut_at else None)

    @property
    def dataverse(self) -> DataverseClient:
        config = self.settings.dataverse
        return self._get(
            "dataverse",
            lambda: DataverseClient(
                config.url,
                build_token_provider(config),
                api_version=config.api_version,
                timeout=config.timeout_seconds,
                inline_retry_after=config.inline_retry_after_seconds,
                throttle=self.throttle,
            ),
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
    def pusher(self) -> LeadPusher:
        config = self.settings.dataverse
        return self._get(
            "pusher",
            lambda: LeadPusher(
                store=self.store,
                writer=LeadWriter(
                    self.dataverse, alternate_key=config.alternate_key, match_columns=config.match_columns
                ),
                schema=SchemaCache(
                    self.dataverse.read_lead_schema,
                    ttl_seconds=config.metadata_ttl_seconds,
                    failure_ttl_seconds=config.metadata_failure_ttl_seconds,
                ),
                choice_overrides=self.choice_overrides,
                max_dequeue_count=self.settings.queue_runtime.max_dequeue_count,
                lease_seconds=self.settings.lead_lease_seconds,
                inline_wait_seconds=config.inline_retry_after_seconds,
                throttle=self.throttle if self.settings.dataverse_shared_backoff else None,
                bulk=self._bulk_writer(),
            ),
        )
