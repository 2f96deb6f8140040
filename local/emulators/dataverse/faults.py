"""Injected failures for Web API requests: random rates with a seed, a script applied in order, or
`every`: one error answered to every request until the plan changes (an outage, a missing privilege);
with `"methods": ["PATCH", "POST"]` in it, only to requests of those methods (a write privilege
removed, reads still allowed)."""
from __future__ import annotations

import random
import threading
from dataclasses import dataclass
from typing import Any

from local.emulators.dataverse.errors import ODataError

# Section 6 of docs/dataverse.md: the three service protection limits and their messages.
THROTTLE_ERRORS = (
    ("0x80072322", "Number of requests exceeded the limit of 6000 over time window of 300 seconds."),
    (
        "0x80072321",
        "Combined execution time of incoming requests exceeded limit of 1,200,000  milliseconds over time window "
        "of 300 seconds. Decrease number of concurrent requests or reduce the duration of requests and try again "
        "later.",
    ),
    ("0x80072326", "Number of concurrent requests exceeded the limit of 52."),
)
_DROPS = ("before", "after_commit")
_RATE_KEYS = ("rate_limit", "server_error", "drop_before", "drop_after_commit")


@dataclass(frozen=True)
class Fault:
    """One injected failure: an error answer (`error`, `retry_after`), or a dropped connection
    (`drop` = "before" or "after_commit"), possibly after `latency_ms`."""

    error: ODataError | None = None
    retry_after: int | None = None
    drop: str | None = None
    latency_ms: int = 0
    methods: frozenset[str] | None = None  # `every` only: the request methods it answers

    def applies_to(self, method: str | None) -> bool:
        return self.methods is None or method is None or method.upper() in self.methods


def _throttle(retry_after: int, code: str | None = None) -> Fault:
    known = dict(THROTTLE_ERRORS)
    code = code if code in known else THROTTLE_ERRORS[0][0]
    return Fault(error=ODataError(429, code, known[code]), retry_after=retry_after)


def _unavailable(status: int = 503, code: str = "", message: str = "") -> Fault:
    return Fault(error=ODataError(status, code, message or "The service is temporarily unavailable."))


def script_fault(step: dict[str, Any]) -> Fault:
    """Build a scripted fault. Raises ValueError for a step that is not understood."""
    if "drop" in step:
        if step["drop"] not in _DROPS:
            raise ValueError(f"drop must be one of {_DROPS}, got {step['drop']!r}")
        return Fault(drop=step["drop"])
    status = step.get("status")
    if not isinstance(status, int) or not 400 <= status <= 599:
        raise ValueError(f"a script step needs an error status or a drop, got {step!r}")
    if status == 429:
        return _throttle(int(step.get("retry_after", 1)), step.get("code"))
    return _unavailable(status, str(step.get("code", "")), str(step.get("message", "")))


def _every(step: dict[str, Any]) -> Fault:
    fault = script_fault(step)
    methods = step.get("methods")
    if methods is None:
        return fault
    if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
        raise ValueError(f"methods must be a list of HTTP methods, got {methods!r}")
    return Fault(fault.error, fault.retry_after, fault.drop, fault.latency_ms, frozenset(m.upper() for m in methods))


class FaultPlan:
    """Thread-safe: `next()` decides the fault (or None) for each Web API request."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        with self._lock:
            self._rates = dict.fromkeys(_RATE_KEYS, 0.0)
            self._retry_after = 1
            self._latency_ms = 0
            self._script: list[Fault] = []
            self._every: Fault | None = None
            self._random = random.Random()

    def configure(self, config: dict[str, Any]) -> None:
        """Replace the plan with `config` (see the control API). Raises ValueError for bad values."""
        rates = {}
        for name in _RATE_KEYS:
            rate = float(config.get(name, 0))
            if not 0 <= rate <= 1:
                raise ValueError(f"{name} must be a probability between 0 and 1")
            rates[name] = rate
        if sum(rates.values()) > 1:
            raise ValueError("the fault probabilities add up to more than 1")
        script = [script_fault(step) for step in config.get("script", [])]
        every = _every(config["every"]) if config.get("every") else None
        with self._lock:
            self._rates = rates
            self._retry_after = int(config.get("retry_after", 1))
            self._latency_ms = int(config.get("latency_ms", 0))
            self._script = script
            self._every = every
            self._random = random.Random(config.get("seed"))

    def describe(self) -> dict[str, Any]:
        with self._lock:
            return {**self._rates, "retry_after": self._retry_after, "latency_ms": self._latency_ms,
                    "script_remaining": len(self._script),
                    "every": self._every.error.status if self._every and self._every.error else None}

    def next(self, method: str | None = None) -> Fault | None:
        with self._lock:
            if self._script:
                return self._script.pop(0)
            if self._every is not None and self._every.applies_to(method):
                return self._every
            draw = self._random.random()
            latency = self._latency_ms
            rates = self._rates
            threshold = 0.0
            for name in _RATE_KEYS:
                threshold += rates[name]
                if draw < threshold:
                    return self._random_fault(name, latency)
            return Fault(latency_ms=latency) if latency else None

    def _random_fault(self, name: str, latency: int) -> Fault:
        if name == "rate_limit":
            code = self._random.choice(THROTTLE_ERRORS)[0]
            fault = _throttle(self._retry_after, code)
        elif name == "server_error":
            fault = _unavailable()
        else:
            fault = Fault(drop=name.removeprefix("drop_"))
        return Fault(fault.error, fault.retry_after, fault.drop, latency)
