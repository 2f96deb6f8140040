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
from dataclasses import dataclass

from shared.model.messages import LeadRef, MalformedMessage
from shared.model.ports import LeadQueuePort, SyncStore
from shared.usecases.failures import classify
from shared.usecases.push import Action, LeadPusher, PushResult

logger = logging.getLogger(__name__)

MAX_BACKOFF_SECONDS = 300.0


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
    wire_text = delivery.body.decode("utf-8", errors="replace")
    try:
        try:
            ref = LeadRef.from_wire(delivery.body)
        except MalformedMessage as exc:
            return _reject(delivery, wire_text, exc, queues=queues, store=store)
        try:
            result = pusher.push(ref, dequeue_count=delivery.dequeue_count)
        except Exception as exc:  # noqa: BLE001 - the claim itself failed: PostgreSQL, mostly
            failure = classify(exc)
            result = PushResult(Action.RETRY, "error", failure.reason)
            logger.warning(
                "d365_push_error company_id=%s: %s",
                ref.company_id,
                failure.reason,
                extra={
                    "company_id": ref.company_id,
                    "correlation_id": ref.correlation_id,
                    "dequeue_count": delivery.dequeue_count,
                },
            )

        if result.action is Action.POISON:
            queues.send_to_poison(wire_text)
        elif result.action is Action.DEFER:
            queues.send([wire_text], delay_seconds=max(1, round(result.delay_seconds)))
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
