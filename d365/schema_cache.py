"""The lead schema, loaded at most once per TTL and shared by every thread of a worker."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from d365.metadata import LeadSchema

logger = logging.getLogger(__name__)

RETRY_FAILED_REFRESH_SECONDS = 60.0


class SchemaCache:
    def __init__(
        self,
        loader: Callable[[], LeadSchema],
        *,
        ttl_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._ttl = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._schema: LeadSchema | None = None
        self._expires_at = 0.0
        self.loads = 0

    def get(self) -> LeadSchema:
        """The cached schema, reloaded when stale. A failed reload keeps serving the old schema;
        with none to serve, the loader's exception propagates (a D365Error from the client)."""
        with self._lock:  # single flight: one thread loads, the others wait and reuse its result
            if self._schema is not None and self._clock() < self._expires_at:
                return self._schema
            try:
                schema = self._loader()
            except Exception:
                if self._schema is None:
                    raise
                logger.warning("d365_schema_refresh_failed", exc_info=True)
                # Not on every get(): a metadata outage must not add a failing call to every push.
                self._expires_at = self._clock() + min(self._ttl, RETRY_FAILED_REFRESH_SECONDS)
                return self._schema
            self.loads += 1
            self._schema = schema
            self._expires_at = self._clock() + self._ttl
            return schema

    def invalidate(self) -> None:
        """Make the next get() reload, e.g. after Dataverse rejected a column."""
        with self._lock:
            self._expires_at = 0.0
