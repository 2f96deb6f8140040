"""The webhook use case: validated leads -> recorded as queued -> one queue message each."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from shared.intake import DeliveryConflict
from shared.model.messages import LeadMessage
from shared.model.ports import LeadQueuePort, SyncStore

logger = logging.getLogger(__name__)

# Kept inside the remembered 202 body (no schema change) and stripped before it is answered again.
_BODY_SHA256 = "body_sha256"
_PENDING = "pending"


def accept_leads(
    leads: Sequence[Mapping[str, Any]],
    *,
    store: SyncStore,
    queues: LeadQueuePort,
    received_at: datetime,
    delivery_id: str | None = None,
    body_sha256: str | None = None,
    traceparent: str | None = None,
) -> dict[str, Any]:
    """Queue the leads; returns the 202 body. A delivery id seen before returns its first answer.

    `body_sha256` (of the raw body) is remembered with the delivery id; the same id with another
    body raises DeliveryConflict (409) and queues nothing. Deliveries remembered without one replay.

    Recorded before sending: a lead whose message is lost after that stays `queued`, and the
    sweeper sends it again. Raises StoreUnavailable or QueueUnavailable (transient).
    """
    if delivery_id:
        earlier = store.claim_delivery(delivery_id, {_BODY_SHA256: body_sha256, _PENDING: True})
        if earlier is not None:
            first_sha256 = earlier.get(_BODY_SHA256)
            if first_sha256 is not None and body_sha256 is not None and first_sha256 != body_sha256:
                logger.warning(
                    "webhook_delivery_conflict delivery_id=%s", delivery_id, extra={"delivery_id": delivery_id}
                )
                raise DeliveryConflict()
            if not earlier.get(_PENDING):
                logger.info(
                    "webhook_duplicate_delivery delivery_id=%s", delivery_id, extra={"delivery_id": delivery_id}
                )
                answer = {key: value for key, value in earlier.items() if key != _BODY_SHA256}
                return {**answer, "duplicate_delivery": True}
            # The same body, claimed by a call that has not answered (it failed, or runs now):
            # queue again; a lead queued twice is pushed once.

    correlation_id = uuid.uuid4().hex
    messages = [
        LeadMessage(lead=lead, correlation_id=correlation_id, received_at=received_at, traceparent=traceparent)
        for lead in leads
    ]
    store.record_queued(messages)
    queues.send([m.to_wire() for m in messages])
    response = {
        "correlation_id": correlation_id,
        "company_ids": [m.company_id for m in messages],
        "duplicate_delivery": False,
    }
    if delivery_id:
        store.remember_delivery(delivery_id, {**response, _BODY_SHA256: body_sha256})
    logger.info(
        "webhook_leads_queued count=%s correlation_id=%s",
        len(messages),
        correlation_id,
        extra={"correlation_id": correlation_id, "lead_count": len(messages)},
    )
    return response
