"""One bearer token kept until shortly before it expires, refreshed by one thread at a time: for
Dataverse (`d365.auth`) and for PostgreSQL's Entra sign-in (`shared.postgres.connect`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

REFRESH_BEFORE_EXPIRY_SECONDS = 300.0


class TokenCache:
    def __init__(
        self,
        acquire: Callable[[], tuple[str, float]],
        *,
        event: str,
        log: logging.Logger,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`acquire` returns (token, seconds until it expires) and raises what the caller handles;
        each new token is logged as `event` on the caller's `log`."""
        self._acquire = acquire
        self._event = event
        self._log = log
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def get(self) -> str:
        with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            token, expires_in = self._acquire()
            # A token shorter-lived than twice the margin is still reused for half its life.
            self._refresh_at = self._clock() + expires_in - min(REFRESH_BEFORE_EXPIRY_SECONDS, expires_in / 2)
            self._token = token
            self._log.info("%s expires_in=%s", self._event, int(expires_in), extra={"expires_in": int(expires_in)})
            return token

    def clear(self, then: Callable[[], None] = lambda: None) -> None:
        """Forget the token; `then` runs under the same lock (to drop a library's own cache too)."""
        with self._lock:
            self._token = None
            then()
