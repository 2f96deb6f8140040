"""The webhook use case: validated leads -> recorded as queued -> one queue message each."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime
from typing import Any, Mapping, Sequence

from shared.messages import LeadMessage
from shared.queue import LeadQueues
from shared.store import LeadStore

logger = logging.getLogger(__name__)


def accept_leads(
    leads: Sequence[Mapping[str, Any]],
    *,
    store: LeadStore,
    queues: LeadQueues,
    received_at: datetime,
    delivery_id: str | None = None,
) -> dict[str, Any]:
    """Queue the leads; returns the 202 body. A delivery id seen before returns its first answer.

    Recorded before sending: a lead whose message is lost after that stays `queued`, and the
    sweeper sends it again. Raises StoreUnavailable or QueueUnavailable (transient).
    """
    if delivery_id:
        earlier = store.delivery_response(delivery_id)
        if earlier is not None:
            logger.info("webhook_duplicate_delivery delivery_id=%s", delivery_id, extra={"delivery_id": delivery_id})
            return {**earlier, "duplicate_delivery": True}

    correlation_id = uuid.uuid4().hex
    messages = [LeadMessage(lead=lead, correlation_id=correlation_id, received_at=received_at) for lead in leads]
    store.record_queued(messages)
    queues.send([m.to_wire() for m in messages])
    response = {
        "correlation_id": correlation_id,
        "company_ids": [m.company_id for m in messages],
        "duplicate_delivery": False,
    }
    if delivery_id:
        store.remember_delivery(delivery_id, response)
    logger.info("webhook_leads_queued count=%s correlation_id=%s", len(messages), correlation_id,
                extra={"correlation_id": correlation_id, "lead_count": len(messages)})
    return response
