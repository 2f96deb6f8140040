"""Audit rows of a push's attempts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.model.sync import Attempt, LeadState


class AttemptClock:
    """Builds the audit row of this delivery's attempt, timed from the start of the push."""

    def __init__(self, started: float, clock: Callable[[], float], correlation_id: str, dequeue_count: int) -> None:
        self._started = started
        self._clock = clock
        self._correlation_id = correlation_id
        self._dequeue_count = dequeue_count

    def elapsed_ms(self) -> float:
        return (self._clock() - self._started) * 1000

    def __call__(self, outcome: str, **fields: Any) -> Attempt:
        return Attempt(
            outcome=outcome,
            duration_ms=self.elapsed_ms(),
            correlation_id=self._correlation_id,
            dequeue_count=self._dequeue_count,
            **fields,
        )


def other_attempt(state: LeadState) -> Callable[..., Attempt]:
    """The audit row of a lead written in another lead's bulk request: untimed, its own correlation."""

    def build(outcome: str, **fields: Any) -> Attempt:
        return Attempt(outcome=outcome, duration_ms=0.0, correlation_id=state.lead.correlation_id, **fields)

    return build
