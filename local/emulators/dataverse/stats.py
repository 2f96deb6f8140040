"""Counts of Web API requests by kind and by answered status, and of service-protection refusals by limit."""
from __future__ import annotations

import threading
from collections import Counter

KINDS = ("GET leads", "GET lead", "PATCH lead", "POST leads", "DELETE lead", "metadata", "whoami", "other")
DROPPED = "dropped"
THROTTLE_LIMITS = ("requests", "execution_time", "concurrency")  # protection.LIMIT_NAMES


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._kinds: Counter[str] = Counter()
            self._statuses: Counter[str] = Counter()
            self._throttled: Counter[str] = Counter()

    def record(self, kind: str, status: int | str) -> None:
        """Count one Web API request; `status` is the answered code, or DROPPED."""
        with self._lock:
            self._requests += 1
            self._kinds[kind] += 1
            self._statuses[str(status)] += 1

    def throttled(self, limit: str) -> None:
        """Count one 429 of a service protection limit (protection.LIMIT_NAMES); `record` counts it too."""
        with self._lock:
            self._throttled[limit] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": self._requests,
                # Kinds outside KINDS ("POST UpsertMultiple", "POST $batch", ...) appear once counted.
                "by_kind": {**{kind: self._kinds[kind] for kind in KINDS}, **self._kinds},
                "throttled": {limit: self._throttled[limit] for limit in THROTTLE_LIMITS},
                "status_counts": dict(self._statuses),
            }
