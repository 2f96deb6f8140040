"""Counts of Web API requests by kind and by answered status."""
from __future__ import annotations

import threading
from collections import Counter

KINDS = ("GET leads", "GET lead", "PATCH lead", "POST leads", "DELETE lead", "metadata", "whoami", "other")
DROPPED = "dropped"


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._requests = 0
            self._kinds: Counter[str] = Counter()
            self._statuses: Counter[str] = Counter()

    def record(self, kind: str, status: int | str) -> None:
        """Count one Web API request; `status` is the answered code, or DROPPED."""
        with self._lock:
            self._requests += 1
            self._kinds[kind] += 1
            self._statuses[str(status)] += 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requests": self._requests,
                "by_kind": {kind: self._kinds[kind] for kind in KINDS},
                "status_counts": dict(self._statuses),
            }
