"""Re-enqueues leads stuck in `queued` or `processing`: their message was lost or expired."""
from __future__ import annotations

import logging

from shared.messages import LeadMessage
from shared.queue import LeadQueues
from shared.store import LeadStore

logger = logging.getLogger(__name__)


def requeue_stuck_leads(*, store: LeadStore, queues: LeadQueues, age_seconds: int) -> int:
    """Returns how many leads were sent again. A lead whose message was only slow is then
    delivered twice, which the push absorbs (the second finds nothing to change)."""
    stuck = store.claim_stuck(age_seconds=age_seconds)
    if stuck:
        queues.send([LeadMessage.from_data(message).to_wire() for _, message in stuck])
        logger.warning("leads_requeued count=%s company_ids=%s", len(stuck), [c for c, _ in stuck][:50],
                       extra={"lead_count": len(stuck)})
    return len(stuck)

