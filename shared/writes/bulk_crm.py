"""A bulk request in a CRM where people work: one read of every known record in the batch (one
`In` query, never one per lead), then for each lead what the single writer would decide after its
412 (shared/writes/known_record.py): people's columns kept, closed and deleted leads left alone.
A lead merged into another record is handed to the single writer, which follows the master."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shared.model.crm import CLOSED, ClosedLeads, ColumnMemory, CrmOutcome, CrmState, DeletedLeads
from shared.model.ports import LeadTable
from shared.writes.known_record import CrmPolicy
from shared.writes.lead_writer import KnownRecord
from shared.writes.ownership import CRM_COLUMNS, ColumnOwnership, crm_outcome, merged_into, remember


class Route(StrEnum):
    BULK = "bulk"  # in the bulk request, with `payload` at `etag`
    LEFT_ALONE = "left_alone"  # nothing written: `crm` says why
    SINGLE = "single"  # merged: the single writer follows the master


@dataclass(frozen=True)
class Verdict:
    route: Route
    payload: Mapping[str, Any]
    etag: str | None = None
    memory: ColumnMemory | None = None
    crm: CrmOutcome | None = None


class BatchCrm:
    def __init__(self, client: LeadTable, ownership: ColumnOwnership, policy: CrmPolicy) -> None:
        self._client = client
        self._ownership = ownership
        self._policy = policy

    def read_needed(self, leads: Iterable[KnownRecord]) -> bool:
        return any(lead.lead_id and not self._left_alone_unread(lead) for lead in leads)

    def read(self, leads: Sequence[KnownRecord], columns: Sequence[str]) -> dict[str, dict]:
        """The known records of the batch, by id, in one query (its pages). Raises D365Error."""
        ids = [lead.lead_id for lead in leads if lead.lead_id and not self._left_alone_unread(lead)]
        if not ids:
            return {}
        found = self._client.find_leads_in_any({"leadid": ids}, select=[*columns, *CRM_COLUMNS])
        return {str(record["leadid"]).lower(): record for record in found}

    def decide(self, lead: KnownRecord, payload: Mapping[str, Any], records: Mapping[str, dict]) -> Verdict:
        if lead.lead_id is None:
            return Verdict(Route.BULK, payload, memory=ColumnMemory(dict(payload)))
        if self._left_alone_unread(lead):  # nothing read, nothing new seen: the stored outcome stays
            return Verdict(Route.LEFT_ALONE, payload)
        record = records.get(lead.lead_id.lower())
        if record is None:  # deleted in the CRM
            if lead.force or self._policy.deleted is DeletedLeads.RECREATE:
                return Verdict(Route.BULK, payload, memory=ColumnMemory(dict(payload)))
            return Verdict(Route.LEFT_ALONE, payload, crm=CrmOutcome(CrmState.DELETED))
        if merged_into(record) is not None:
            return Verdict(Route.SINGLE, payload)
        seen = crm_outcome(record)
        if seen is not None and seen.state in CLOSED and not lead.force:
            if self._policy.closed is ClosedLeads.LEAVE:
                return Verdict(Route.LEFT_ALONE, payload, crm=seen)
            payload = self._ownership.hunters_only(payload)
        people = lead.memory.people if lead.force else self._ownership.changed_by_people(payload, lead.memory, record)
        sent = self._ownership.sendable(payload, people)
        return Verdict(Route.BULK, sent, record.get("@odata.etag"), remember(sent, lead.memory, people), seen)

    def _left_alone_unread(self, lead: KnownRecord) -> bool:
        """Known to be closed, deleted or merged away, under a policy that leaves it: no read needed."""
        if lead.force or lead.crm_state is None:
            return False
        if lead.crm_state in CLOSED:
            return self._policy.closed is ClosedLeads.LEAVE
        if lead.crm_state is CrmState.DELETED:
            return self._policy.deleted is DeletedLeads.LEAVE
        return lead.crm_state is CrmState.MERGED
