"""Builds the app's dependencies once per worker process, lazily, from the validated settings."""
from __future__ import annotations

import threading
from typing import Any, Callable

from d365.auth import build_token_provider
from d365.client import DataverseClient
from d365.mapping import load_choice_overrides
from d365.schema_cache import SchemaCache
from shared.lead_writer import LeadWriter
from shared.push import LeadPusher
from shared.queue import LeadQueues
from shared.settings import Settings
from shared.store import LeadStore


class Container:
    """Each dependency is built on first use, once, even when worker threads ask at the same time."""

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
        def build() -> LeadStore:
            store = LeadStore(self.settings.database_url)
            store.migrate()
            return store

        return self._get("store", build)

    @property
    def queues(self) -> LeadQueues:
        return self._get("queues", lambda: LeadQueues(self.settings.storage, self.settings.lead_queue_name))

    @property
    def dataverse(self) -> DataverseClient:
        config = self.settings.dataverse
        return self._get("dataverse", lambda: DataverseClient(
            config.url,
            build_token_provider(config),
            api_version=config.api_version,
            timeout=config.timeout_seconds,
            inline_retry_after=config.inline_retry_after_seconds,
        ))

    @property
    def pusher(self) -> LeadPusher:
        config = self.settings.dataverse
        return self._get("pusher", lambda: LeadPusher(
            store=self.store,
            writer=LeadWriter(self.dataverse, alternate_key=config.alternate_key, match_columns=config.match_columns),
            schema=SchemaCache(self.dataverse.read_lead_schema, ttl_seconds=config.metadata_ttl_seconds),
            choice_overrides=self.choice_overrides,
            max_dequeue_count=self.settings.queue_runtime.max_dequeue_count,
        ))
