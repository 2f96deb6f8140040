"""One "throttled until" shared by every request of a worker process, and beyond it.

Dataverse's service protection limits count per application user, so a 429 seen by one request
applies to all: `ThrottleGate.on_rate_limited` records how long, and hands the moment to `publish`
(the app stores it in PostgreSQL, for the other instances); `merge` takes in a moment learnt
elsewhere (read from PostgreSQL, with each claim and through `refresh` at most once a second).
Before each send the client calls `before_request`, which waits a short remainder inline and
refuses a long one with `D365RateLimitError`, without sending. Waiters resume spread over the last
Retry-After, not at one instant: a herd released together would meet the limit again at once.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from d365 import deadline
from d365.errors import D365RateLimitError

logger = logging.getLogger(__name__)


REFRESH_EVERY_SECONDS = 1.0
DEFAULT_MAX_CONCURRENT = 52  # Dataverse's concurrent requests per user


class ThrottleGate:
    def __init__(
        self,
        *,
        inline_wait_seconds: float,
        publish: Callable[[float], None] | None = None,
        publish_cut: Callable[[float], None] | None = None,
        refresh: Callable[[], tuple[float | None, float | None]] | None = None,
        concurrency: ConcurrencyLimit | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._inline_wait = inline_wait_seconds
        self._publish = publish
        self._publish_cut = publish_cut
        self._refresh = refresh
        self.concurrency = concurrency or ConcurrencyLimit(DEFAULT_MAX_CONCURRENT)
        self._cut_seen = float("-inf")
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._until = 0.0
        self._spread = 0.0
        self._refreshed_at = float("-inf")

    @property
    def throttled_until(self) -> float:
        """Epoch seconds until which Dataverse asked us to wait (in the past when it did not)."""
        with self._lock:
            return self._until

    def remaining(self) -> float:
        """Seconds still to wait; 0.0 when not throttled."""
        return max(0.0, self.throttled_until - self._clock())

    def merge(self, until_epoch: float | None) -> None:
        """Take in a "throttled until" learnt elsewhere; the later of the two holds."""
        if until_epoch is None:
            return
        with self._lock:
            if until_epoch > self._until:
                # Whoever saw the 429 knows its Retry-After; resume spread over what is left of it.
                self._spread = max(self._spread, until_epoch - self._clock())
            self._until = max(self._until, float(until_epoch))

    def merge_for(self, seconds: float) -> None:
        """Take in a throttle learnt elsewhere as seconds from now (by this gate's clock)."""
        self.merge(self._clock() + seconds)

    def before_request(self) -> None:
        """Return when a request may be sent: at once, or after waiting a remainder that is no
        longer than the inline wait and fits the current deadline.
        Raises D365RateLimitError (retry_after = the remainder) instead of waiting longer."""
        self._refresh_now()
        wait = self.remaining()
        if wait <= 0:
            return
        budget = deadline.remaining()
        if wait <= self._inline_wait and (budget is None or wait < budget):
            with self._lock:
                spread = self._spread
            jitter = self._rng.uniform(0, min(spread, self._inline_wait - wait))
            self._sleep(wait + (jitter if budget is None or wait + jitter < budget else 0.0))
            return
        raise D365RateLimitError(f"Dataverse throttled for another {wait:.1f}s; not sent", retry_after=wait)

    def on_rate_limited(self, retry_after: float) -> None:
        """Record a 429 with this Retry-After and publish the resulting "throttled until"."""
        with self._lock:
            self._until = max(self._until, self._clock() + retry_after)
            self._spread = retry_after
            until = self._until
        if self._publish is None:
            return
        try:
            self._publish(until)
        except Exception:  # the local gate still holds; the other instances learn of it by their own 429
            logger.warning("d365_throttle_publish_failed until=%s", until, exc_info=True)

    def _refresh_now(self) -> None:
        """Read the shared "throttled until" if it was not read in the last second."""
        if self._refresh is None:
            return
        now = self._clock()
        with self._lock:
            if now - self._refreshed_at < REFRESH_EVERY_SECONDS:
                return
            self._refreshed_at = now
        try:
            until, cut_at = self._refresh()
        except Exception:  # the local gate still holds
            logger.warning("d365_throttle_refresh_failed", exc_info=True)
            return
        self.merge(until)
        with self._lock:
            new_cut = cut_at is not None and cut_at > self._cut_seen
            if cut_at is not None and new_cut:
                self._cut_seen = cut_at
        if new_cut:
            self.concurrency.cut()

    def on_concurrency_limited(self) -> None:
        """Dataverse refused a request for running too many at once: this process sends fewer, and
        (published) every other process does too, at once, instead of each finding out by a 429."""
        self.concurrency.cut()
        now = self._clock()
        with self._lock:
            self._cut_seen = max(self._cut_seen, now)
        if self._publish_cut is None:
            return
        try:
            self._publish_cut(now)
        except Exception:
            logger.warning("d365_concurrency_cut_publish_failed", exc_info=True)


CONCURRENCY_LIMIT_CODE = "0x80072326"  # Dataverse: too many concurrent requests for this user
# Answers per slot before one more slot: growing by one slot per round of answers would reach the
# limit again within a round or two, each time with a crowd of 429s; this probes about 8x slower.
GROWTH_ANSWERS = 8


class ConcurrencyLimit:
    """How many requests this process sends to Dataverse at once. A 429 for the concurrency limit
    halves it (at most once a second); each run of answers without one (`GROWTH_ANSWERS` per slot)
    grows it back by one, up to `maximum`. Processes that each do this settle, together, under
    Dataverse's limit: a shared pause would only release every waiter at once into the same limit."""

    def __init__(self, maximum: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.maximum = maximum
        self._limit = maximum
        self._running = 0
        self._answered = 0
        self._cut_at = float("-inf")
        self._clock = clock
        self._changed = threading.Condition()

    @property
    def limit(self) -> int:
        with self._changed:
            return self._limit

    def acquire(self, timeout: float | None) -> bool:
        """Wait for a slot; False when none came within `timeout` seconds."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._running < self._limit, timeout=timeout):
                return False
            self._running += 1
            return True

    def cut(self) -> None:
        """Halve the limit (once a second at most: the answers of one crowd count once)."""
        with self._changed:
            now = self._clock()
            if now - self._cut_at >= 1.0:
                self._limit = max(1, self._limit // 2)
                self._cut_at = now
            self._answered = 0

    def release(self, *, too_many: bool) -> None:
        if too_many:
            self.cut()
        with self._changed:
            self._running -= 1
            if not too_many:
                self._answered += 1
                if self._answered >= GROWTH_ANSWERS * self._limit and self._limit < self.maximum:
                    self._limit += 1
                    self._answered = 0
            self._changed.notify_all()
