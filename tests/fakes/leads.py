"""Hunter leads for tests of the push: one per company, versioned by minutes after T0."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shared.model.messages import LeadMessage, LeadRef

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def hunter_lead(company_id: int, minutes: int = 0, **fields: Any) -> dict[str, Any]:
    """A valid Hunter lead (the PoC's company 86, renamed), at version T0 + `minutes`."""
    return {
        "company_id": company_id, "domain": f"company{company_id}.example", "canonical_name": f"company{company_id}",
        "readiness_score": 90, "m365_fit_score": 90, "priority_score": 3, "segment": "Existing", "provider": "M365",
        "tenant_size": "medium", "contact_emails": [f"it@company{company_id}.example"],
        "infrastructure_summary": f"version {minutes}", "source": "Manual", "processing_status": "Idle",
        "referral_id": None, "referral_type": None, "updated_at": (T0 + timedelta(minutes=minutes)).isoformat(),
        **fields,
    }


def accepted(company_id: int, minutes: int = 0, **fields: Any) -> LeadMessage:
    """The lead as the webhook accepted it."""
    return LeadMessage(lead=hunter_lead(company_id, minutes, **fields), correlation_id=f"c{company_id}-v{minutes}",
                       received_at=T0 + timedelta(minutes=minutes))


def ref(company_id: int, minutes: int = 0) -> LeadRef:
    """The queue message of that version."""
    return LeadRef(company_id=company_id, version=T0 + timedelta(minutes=minutes),
                   correlation_id=f"c{company_id}-v{minutes}")
