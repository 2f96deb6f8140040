"""One queue delivery, start to finish: decode, push, and carry out the queue side of the outcome.

Success: acknowledge. Permanent: the reason is recorded, the message copied to the poison queue,
acknowledged. Throttled, or the lead held by another worker: re-enqueued with that delay,
acknowledged. Transient: recorded, the next delivery pushed back (exponential, jittered), and
`RetryLater` raised so the runtime delivers it again, and moves it to the poison queue after
host.json's maxDequeueCount. Nothing else leaves `handle_delivery`.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, replace

from shared.model.errors import StoreUnavailable
from shared.model.messages import LeadRef, MalformedMessage
from shared.model.outcomes import Outcome
from shared.model.ports import LeadQueuePort, SyncStore
from shared.usecases.failures import classify
from shared.usecases.push import Action, LeadPusher, PushResult

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0
OUTAGE_BACKOFF_BASE_SECONDS = 15.0
# A lead waiting out a database outage looks again at least once a minute: the outage costs it no
# delivery, and it syncs within a minute or so of the database's return.
MAX_OUTAGE_BACKOFF_SECONDS = 60.0


class RetryLater(Exception):
    """Raised to the runtime so it delivers the message again; `outcome` is `error`, or `failed`
    on the last delivery."""

    def __init__(self, reason: str | None, *, outcome: str = "error") -> None:
        super().__init__(reason)
        self.outcome = outcome


@dataclass(frozen=True)
class Delivery:
    body: bytes
    message_id: str | None
    pop_receipt: str | None
    dequeue_count: int


_JITTER = random.Random()


def backoff_seconds(dequeue_count: int, *, base: float, rng: random.Random = _JITTER) -> float:
    """base, 2*base, 4*base ... capped, with +-20% jitter so retries of a burst spread out."""
    delay = min(max(base, 1.0) * 2 ** max(dequeue_count - 1, 0), MAX_BACKOFF_SECONDS)
    return delay * rng.uniform(0.8, 1.2)


def handle_delivery(
    delivery: Delivery,
    *,
    pusher: LeadPusher,
    queues: LeadQueuePort,
    store: SyncStore,
    backoff_base_seconds: float,
    max_dequeue_count: int,
) -> PushResult:
    """Raises RetryLater for a transient failure, and nothing else."""
    wire_text = requeued = delivery.body.decode("utf-8", errors="replace")
    try:
        try:
            ref = LeadRef.from_wire(delivery.body)
        except MalformedMessage as exc:
            return _reject(delivery, wire_text, exc, queues=queues, store=store)
        try:
            result = pusher.push(ref, dequeue_count=delivery.dequeue_count)
        except Exception as exc:  # noqa: BLE001 - the claim itself failed: PostgreSQL, mostly
            result, requeued = _not_pushed(ref, exc, wire_text, delivery.dequeue_count)

        if result.action is Action.POISON:
            queues.send_to_poison(wire_text)
        elif result.action is Action.DEFER:
            queues.send([requeued], delay_seconds=max(1, round(result.delay_seconds)))
    except Exception as exc:  # the queue could not be reached: let the runtime retry
        raise RetryLater(classify(exc).reason) from exc

    if result.action is Action.RETRY:
        if delivery.dequeue_count < max_dequeue_count and delivery.message_id and delivery.pop_receipt:
            # Not on the last delivery: the runtime's own move to the poison queue needs its pop receipt.
            queues.delay_redelivery(
                delivery.message_id,
                delivery.pop_receipt,
                backoff_seconds(delivery.dequeue_count, base=backoff_base_seconds),
            )
        raise RetryLater(result.reason, outcome=result.outcome)
    return result


def outage_backoff_seconds(waits: int, *, rng: random.Random = _JITTER) -> float:
    """15 s, 30 s, then every 60 s, with +-20% jitter: an outage of any length costs no delivery,
    and the leads come back within a minute or so of its end."""
    return min(OUTAGE_BACKOFF_BASE_SECONDS * 2 ** min(waits, 8), MAX_OUTAGE_BACKOFF_SECONDS) * rng.uniform(0.8, 1.2)


def _not_pushed(ref: LeadRef, exc: Exception, wire_text: str, dequeue_count: int) -> tuple[PushResult, str]:
    """The push could not even claim the lead. PostgreSQL unreachable: the message is sent again,
    later, as a fresh one, so no outage uses up its deliveries. Anything else: retried as usual."""
    failure = classify(exc)
    context = {"company_id": ref.company_id, "correlation_id": ref.correlation_id, "dequeue_count": dequeue_count}
    logger.warning("d365_push_error company_id=%s: %s", ref.company_id, failure.reason, extra=context)
    if not isinstance(exc, StoreUnavailable):
        return PushResult(Action.RETRY, Outcome.ERROR, failure.reason), wire_text
    delay = outage_backoff_seconds(ref.outage_waits)
    # A v1 message carries its lead, so it goes back as it came.
    again = wire_text if ref.accepted is not None else replace(ref, outage_waits=ref.outage_waits + 1).to_wire()
    return PushResult(Action.DEFER, Outcome.ERROR, failure.reason, delay_seconds=delay), again


def _reject(
    delivery: Delivery, wire_text: str, exc: MalformedMessage, *, queues: LeadQueuePort, store: SyncStore
) -> PushResult:
    logger.error(
        "d365_push_failed message_id=%s company_id=%s: malformed message: %s",
        delivery.message_id,
        exc.company_id,
        exc.reason,
        extra={"message_id": delivery.message_id, "company_id": exc.company_id},
    )
    if exc.company_id is not None:
        store.record_rejected_message(
            exc.company_id, f"malformed message: {exc.reason}", dequeue_count=delivery.dequeue_count
        )
    queues.send_to_poison(wire_text)
    return PushResult(Action.POISON, "failed", exc.reason)
