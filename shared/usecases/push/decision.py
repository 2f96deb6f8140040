"""What to do with a claimed lead: pure decisions over the stored state and the message, apart
from the I/O that carries them out (table-tested in tests/push/test_push_decision_table.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shared.model.outcomes import Outcome
from shared.model.sync import LeadState
from shared.usecases.push.result import Action

# A leased lead is looked at again after this at most: a bulk write holds many leads for a moment,
# not for its whole lease.
LEASED_RECHECK_SECONDS = 10.0

FAILED_FINALLY = "the newest version failed finally; replay it to retry"
ALREADY_SYNCED = "the newest version is already synced"
THROTTLED = "Dataverse is throttling every worker"


@dataclass(frozen=True)
class Decision:
    """`write` False: release the lead with `outcome` and tell the queue `action`, `why`."""

    write: bool
    outcome: Outcome | None = None
    action: Action = Action.DONE
    delay_seconds: float = 0.0
    why: str = ""


WRITE = Decision(write=True)


def decide(state: LeadState, message_version: datetime, *, throttled_for: float, inline_wait: float) -> Decision:
    """Before mapping: is there anything to write, and may it be written now?"""
    version = state.queued_version
    if state.failed_version is not None and state.failed_version >= version:
        # The failed version's own message belongs in the poison queue, where replay finds it, even
        # if the delivery that failed could not put it there (a duplicate is harmless).
        own = message_version >= state.failed_version
        return Decision(False, Outcome.SKIPPED, Action.POISON if own else Action.DONE, why=FAILED_FINALLY)
    if state.synced_version is not None and state.synced_version >= version:
        outcome = Outcome.SKIPPED if message_version < state.synced_version else Outcome.UNCHANGED
        return Decision(False, outcome, why=ALREADY_SYNCED)
    if throttled_for > inline_wait:
        return Decision(False, Outcome.DEFERRED, Action.DEFER, throttled_for, why=THROTTLED)
    return WRITE


def already_written(state: LeadState, fingerprint: str) -> bool:
    """After mapping: the payload is the one last written to the record, so no request is needed."""
    return bool(state.d365_lead_id) and fingerprint == state.synced_fingerprint


def leased_delay(leased_for: float, jitter: float) -> float:
    """When to look again at a lead another worker holds; `jitter` in [1.0, 1.2)."""
    return min(max(leased_for, 1.0), LEASED_RECHECK_SECONDS) * jitter


def is_final(*, transient: bool, dequeue_count: int, max_dequeue_count: int) -> bool:
    """A failure is final when no retry can help, or this was the last delivery."""
    return not transient or dequeue_count >= max_dequeue_count
