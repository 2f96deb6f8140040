"""The lead schema, loaded at most once per TTL and shared by every thread of a worker.

A failed load with no schema to fall back on is remembered for `failure_ttl_seconds`: meanwhile
`get()` raises a copy of that error without asking Dataverse, so a cold instance with hundreds of
queued leads sends one round of metadata requests per failure window, not one per lead. A 429 is
remembered until its Retry-After has passed instead, and re-raised with the time still to wait.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable

from d365.errors import D365RateLimitError
from d365.metadata import LeadSchema

logger = logging.getLogger(__name__)

RETRY_FAILED_REFRESH_SECONDS = 60.0
DEFAULT_FAILURE_TTL_SECONDS = 30.0


class SchemaCache:
    def __init__(
        self,
        loader: Callable[[], LeadSchema],
        *,
        ttl_seconds: float,
        failure_ttl_seconds: float = DEFAULT_FAILURE_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._loader = loader
        self._ttl = ttl_seconds
        self._failure_ttl = failure_ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._schema: LeadSchema | None = None
        self._expires_at = 0.0
        self._failure: Exception | None = None
        self._failure_until = 0.0
        self.loads = 0
        self.failures = 0

    def get(self) -> LeadSchema:
        """The cached schema, reloaded when stale. A failed reload keeps serving the old schema;
        with none to serve, the loader's exception propagates (a D365Error from the client), and
        is raised again, without a load, until the failure window has passed."""
        with self._lock:  # single flight: one thread loads, the others wait and reuse its result
            now = self._clock()
            if self._schema is not None and now < self._expires_at:
                return self._schema
            if self._failure is not None and now < self._failure_until:
                raise self._remembered(self._failure, now)
            try:
                schema = self._loader()
            except Exception as exc:
                self.failures += 1
                if self._schema is None:
                    self._remember(exc, now)
                    raise
                logger.warning("d365_schema_refresh_failed", exc_info=True)
                # Not on every get(): a metadata outage must not add a failing call to every push.
                self._expires_at = now + min(self._ttl, RETRY_FAILED_REFRESH_SECONDS)
                return self._schema
            self.loads += 1
            self._schema = schema
            self._failure = None
            self._expires_at = self._clock() + self._ttl
            return schema

    def invalidate(self) -> None:
        """Make the next get() reload, e.g. after Dataverse rejected a column. A remembered
        failure still holds until its window has passed."""
        with self._lock:
            self._expires_at = 0.0

    @property
    def remembered_failure(self) -> Exception | None:
        """The failed load `get()` is raising again without asking Dataverse, if any."""
        with self._lock:
            return self._failure if self._failure is not None and self._clock() < self._failure_until else None

    def forget_failure(self) -> None:
        """Ask Dataverse on the next get(), even within the failure window: what failed was fixed."""
        with self._lock:
            self._failure = None
            self._failure_until = 0.0

    def _remember(self, error: Exception, now: float) -> None:
        window = error.retry_after if isinstance(error, D365RateLimitError) else self._failure_ttl
        self._failure = error
        self._failure_until = now + window

    def _remembered(self, failure: Exception, now: float) -> Exception:
        """A fresh copy of the remembered error (raising one instance from many threads would
        tangle its traceback); a 429 carries the time left before the next load."""
        error = copy.copy(failure)
        if isinstance(error, D365RateLimitError):
            error.retry_after = self._failure_until - now
        return error
