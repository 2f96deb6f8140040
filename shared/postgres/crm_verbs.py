"""The store's verbs of the CRM's outcomes (`shared.model.crm`): what the outcome reader stores."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.model.crm import CrmOutcome
from shared.model.messages import LeadRef


class CrmVerbs:
    def _execute(self, name: str, params: dict[str, Any] | None = None, *, fetch: str | None = None) -> Any:
        raise NotImplementedError

    def lease_outcome_reader(self, token: str, *, lease_seconds: float) -> tuple[bool, datetime | None]:
        """(leased, where the last read stopped): one instance at a time reads the CRM's changes."""
        row = self._execute("lease_outcome_reader", {"token": token, "lease_seconds": lease_seconds}, fetch="one")
        return (row is not None, row["modified_since"] if row else None)

    def advance_outcome_reader(self, token: str, since: datetime) -> bool:
        """After a page is stored: the next read starts at `since`. False when the lease was lost."""
        return self._execute("advance_outcome_reader", {"token": token, "since": since}, fetch="one") is not None

    def release_outcome_reader(self, token: str) -> None:
        self._execute("release_outcome_reader", {"token": token})

    def record_crm_outcome(self, d365_lead_id: str, outcome: CrmOutcome) -> tuple[int, LeadRef | None] | None:
        """Store what the CRM shows of the record a lead holds (following a merge to a free master).
        Returns the lead's company id, and its reference when it was closed and is open again (its
        newest version is due); None when no lead holds the record."""
        row = self._execute(
            "record_crm_outcome",
            {
                "d365_lead_id": d365_lead_id,
                "state": outcome.state,
                "status_code": outcome.status_code,
                "owner_id": outcome.owner_id,
                "merged_into": outcome.merged_into,
            },
            fetch="one",
        )
        if row is None:
            return None
        due = (
            LeadRef(row["company_id"], row["queued_version"], row["correlation_id"] or "") if row["reopened"] else None
        )
        return row["company_id"], due

    def count_by_crm_state(self) -> dict[str, int]:
        return {row["crm_state"]: row["leads"] for row in self._execute("count_by_crm_state", fetch="all")}
