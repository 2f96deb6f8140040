"""Service protection limits (docs/dataverse.md 6), per user, scaled down for tests and benchmarks.

Three limits, each off when 0: requests in a sliding window, combined execution time in the same window,
and concurrent requests. The two window limits trip only once they are exceeded (the request that crosses
a limit still runs; the next is refused); the concurrency limit refuses at once. A refused request is
answered 429 with `Retry-After` (whole seconds, at least 1) and is not counted. A `$batch` or bulk request
counts as one request; its execution time is its handling time (including injected latency) plus
`execution_ms_per_record` for every record it writes or inner request it runs.
"""
from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from local.emulators.dataverse.errors import ODataError

REQUESTS = "requests"
EXECUTION_TIME = "execution_time"
CONCURRENCY = "concurrency"
LIMIT_NAMES = (REQUESTS, EXECUTION_TIME, CONCURRENCY)
CODES = {REQUESTS: "0x80072322", EXECUTION_TIME: "0x80072321", CONCURRENCY: "0x80072326"}


@dataclass(frozen=True)
class Limits:
    requests_per_window: int = 0
    execution_ms_per_window: int = 0
    max_concurrent: int = 0
    window_seconds: float = 300.0
    execution_ms_per_record: float = 0.0

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> Limits:
        """Raises ValueError for an unknown name or a negative value (window_seconds must be positive)."""
        known = {f.name: f.type for f in fields(cls)}
        unknown = set(spec) - set(known)
        if unknown:
            raise ValueError(f"unknown protection settings: {', '.join(sorted(unknown))}")
        values: dict[str, Any] = {}
        for name, value in spec.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a number >= 0")
            if known[name] == "int" and value != int(value):
                raise ValueError(f"{name} must be a whole number")
            values[name] = int(value) if known[name] == "int" else float(value)
        limits = cls(**values)
        if limits.window_seconds <= 0:
            raise ValueError("window_seconds must be > 0")
        return limits

    @property
    def enabled(self) -> bool:
        return bool(self.requests_per_window or self.execution_ms_per_window or self.max_concurrent)


@dataclass(frozen=True)
class Refusal:
    limit: str  # one of LIMIT_NAMES
    error: ODataError
    retry_after: int


@dataclass
class _Usage:
    requests: deque = field(default_factory=deque)  # start times
    executions: deque = field(default_factory=deque)  # (end time, ms)
    execution_ms: float = 0.0
    in_flight: int = 0


class ServiceProtection:
    """Thread-safe: `admit(user)` before handling a request, `release(user, ms, records)` after it."""

    def __init__(self, limits: Limits | None = None) -> None:
        self._lock = threading.Lock()
        self.initial = limits or Limits()
        self.reset()

    def reset(self) -> None:
        """Restore the limits the emulator started with and forget all usage."""
        self.configure(self.initial)

    def configure(self, limits: Limits) -> None:
        with self._lock:
            self.limits = limits
            self._users: dict[str, _Usage] = {}

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {**asdict(self.limits), "enabled": self.limits.enabled}

    def admit(self, user: str) -> Refusal | None:
        """Count the request and take a concurrency slot, or say which limit refuses it."""
        now = time.monotonic()
        with self._lock:
            limits = self.limits
            usage = self._users.setdefault(user, _Usage())
            self._expire(usage, now - limits.window_seconds)
            refusal = self._check(limits, usage, now)
            if refusal is not None:
                return refusal
            usage.requests.append(now)
            usage.in_flight += 1
            return None

    def release(self, user: str, handling_ms: float, records: int = 1) -> None:
        """Free the request's slot and add its execution time."""
        with self._lock:
            usage = self._users.get(user)
            if usage is None:  # configured anew while the request ran
                return
            usage.in_flight = max(0, usage.in_flight - 1)
            spent = handling_ms + max(records, 0) * self.limits.execution_ms_per_record
            usage.executions.append((time.monotonic(), spent))
            usage.execution_ms += spent

    @staticmethod
    def _expire(usage: _Usage, horizon: float) -> None:
        while usage.requests and usage.requests[0] <= horizon:
            usage.requests.popleft()
        while usage.executions and usage.executions[0][0] <= horizon:
            usage.execution_ms -= usage.executions.popleft()[1]

    @staticmethod
    def _check(limits: Limits, usage: _Usage, now: float) -> Refusal | None:
        window = limits.window_seconds
        shown_window = f"{window:g}"
        if limits.max_concurrent and usage.in_flight >= limits.max_concurrent:
            message = f"Number of concurrent requests exceeded the limit of {limits.max_concurrent}."
            return Refusal(CONCURRENCY, ODataError(429, CODES[CONCURRENCY], message), 1)
        if limits.requests_per_window and len(usage.requests) > limits.requests_per_window - 1:
            message = (f"Number of requests exceeded the limit of {limits.requests_per_window} over time window "
                       f"of {shown_window} seconds.")
            wait = usage.requests[len(usage.requests) - limits.requests_per_window] + window - now
            return Refusal(REQUESTS, ODataError(429, CODES[REQUESTS], message), _seconds(wait))
        if limits.execution_ms_per_window and usage.execution_ms > limits.execution_ms_per_window:
            message = (f"Combined execution time of incoming requests exceeded limit of "
                       f"{limits.execution_ms_per_window:,}  milliseconds over time window of {shown_window} "
                       "seconds. Decrease number of concurrent requests or reduce the duration of requests and "
                       "try again later.")
            excess = usage.execution_ms - limits.execution_ms_per_window
            wait = window
            for ended, spent in usage.executions:
                excess -= spent
                if excess <= 0:
                    wait = ended + window - now
                    break
            return Refusal(EXECUTION_TIME, ODataError(429, CODES[EXECUTION_TIME], message), _seconds(wait))
        return None


def _seconds(wait: float) -> int:
    return max(1, math.ceil(wait))
