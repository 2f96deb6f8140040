"""Moving messages from the poison queue back to the lead queue (`python -m shared.runtime.replay`
does it from a shell)."""

from __future__ import annotations

import logging

from shared.model.messages import LeadRef, MalformedMessage
from shared.model.ports import LeadQueuePort, SyncStore

logger = logging.getLogger(__name__)


def replay_poisoned(*, queues: LeadQueuePort, store: SyncStore, company_id: int | None = None) -> int:
    """Move all poison messages (or one company's) back to the lead queue, each lead reset to
    `queued`. Returns how many were moved. Raises QueueUnavailable or StoreUnavailable."""
    moved = 0
    for message in queues.drain_poison():
        lead_company: int | None
        try:
            lead_company = LeadRef.from_wire(message.text.encode("utf-8")).company_id
        except MalformedMessage as exc:
            lead_company = exc.company_id
        if company_id is not None and lead_company != company_id:
            queues.release_poison(message)
            continue
        if lead_company is not None:
            store.reset_for_replay(lead_company)
        queues.send([message.text])
        queues.remove_from_poison(message)
        moved += 1
        logger.info(
            "poison_replayed company_id=%s message_id=%s",
            lead_company,
            message.id,
            extra={"company_id": lead_company, "message_id": message.id},
        )
    return moved
