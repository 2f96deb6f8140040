"""What a push tells the queue side to do with the message."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    DONE = "done"  # acknowledge the message
    POISON = "poison"  # can never succeed: to the poison queue, then acknowledge
    DEFER = "defer"  # throttled or leased: re-enqueue after `delay_seconds`, then acknowledge
    RETRY = "retry"  # transient: let the runtime deliver it again


@dataclass(frozen=True)
class PushResult:
    action: Action
    outcome: str
    reason: str | None = None
    delay_seconds: float = 0.0
    d365_lead_id: str | None = None
    # The outcomes of the other leads written (or failed) in this push's bulk request. One that
    # failed for good reaches the poison queue with its own message, which finds it failed.
    batch_outcomes: tuple[str, ...] = ()
    # Dataverse itself refused this lead (a permanent answer): the org let the request through.
    refused_by_dataverse: bool = False
