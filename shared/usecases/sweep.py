"""Re-enqueues leads whose message was lost or expired: left queued, processing or in error too
long, held by nobody, and sent before the oldest message still waiting in the queue (a lead
behind a long backlog is only slow, not stuck)."""

from __future__ import annotations

import logging

from shared.model.ports import LeadQueuePort, SyncStore

logger = logging.getLogger(__name__)


def requeue_stuck_leads(*, store: SyncStore, queues: LeadQueuePort, age_seconds: int) -> int:
    """Returns how many leads were sent again. A lead whose message was only slow is then
    delivered twice, which the push absorbs (the second finds nothing to do)."""
    stuck = store.claim_stuck(age_seconds=age_seconds, oldest_waiting=queues.oldest_waiting())
    if stuck:
        queues.send([ref.to_wire() for ref in stuck])
        logger.warning(
            "leads_requeued count=%s company_ids=%s",
            len(stuck),
            [r.company_id for r in stuck][:50],
            extra={"lead_count": len(stuck)},
        )
    return len(stuck)
