"""Writing to the record a lead already has, in a CRM where people work it.

One request when nobody touched the record: an update with `If-Match: <the row version of our last
write>`. When that answers 412, the record changed since: it is read once, and then
- merged into another record: the write follows the master (at most `MAX_MERGE_HOPS` records
  deep), unless another Hunter company holds it; only Hunter's columns go to the master, its other
  columns are the people's;
- qualified or disqualified: left alone (`D365_CLOSED_LEADS=leave`), or given Hunter's columns only;
- open: the columns a person changed keep their value; the rest is written, at the version read.
A 404 means a person deleted the record: it is left alone unless `D365_DELETED_LEADS=recreate`
(the caller then matches it again). An operator's replay (`force`) writes through all of this.

Between the read and the write a person may change the record again: the write then answers 412
and the next delivery reads it afresh. Nothing is overwritten in that window.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from d365.errors import D365NotFoundError, D365RecordChangedError
from shared.model.crm import CLOSED, ClosedLeads, ColumnMemory, CrmOutcome, CrmState, DeletedLeads
from shared.model.ports import LeadTable
from shared.writes.ownership import CRM_COLUMNS, ColumnOwnership, crm_outcome, merged_into, remember

MAX_MERGE_HOPS = 5


@dataclass(frozen=True)
class CrmPolicy:
    closed: ClosedLeads = ClosedLeads.LEAVE
    deleted: DeletedLeads = DeletedLeads.LEAVE


@dataclass(frozen=True)
class KnownWrite:
    """A write to the lead's record (or to the master it was merged into), or none: `left_alone`."""

    lead_id: str
    etag: str | None
    requests: int
    crm: CrmOutcome | None = None
    memory: ColumnMemory | None = None
    left_alone: bool = False


class RecordDeleted(Exception):
    """The record is gone and may be created again (D365_DELETED_LEADS=recreate, or forced)."""

    def __init__(self, lead_id: str, requests: int) -> None:
        super().__init__(lead_id)
        self.requests = requests


class KnownRecordWriter:
    def __init__(self, client: LeadTable, ownership: ColumnOwnership, policy: CrmPolicy) -> None:
        self._client = client
        self._ownership = ownership
        self._policy = policy

    def write(
        self,
        lead_id: str,
        payload: Mapping[str, Any],
        *,
        etag: str | None,
        memory: ColumnMemory,
        known_state: CrmState | None,
        force: bool,
        reserve: Callable[[str], bool],
    ) -> KnownWrite:
        """Raises RecordDeleted when the record is gone and may be created again; D365Error."""
        if not force and self._leaves(known_state):
            return KnownWrite(lead_id, etag, 0, CrmOutcome(known_state) if known_state else None, left_alone=True)
        if known_state in CLOSED and not force:
            payload = self._ownership.hunters_only(payload)
        if etag is None and not force:
            # The version of our last write is unknown (UpsertMultiple answers none; the outcome reader
            # followed a merge): `If-Match: *` would overwrite what people did since. Read first.
            # docs/found-by-simulation.md #6
            return self._after_change(lead_id, payload, memory, force, reserve, requests=0)
        sent = self._ownership.sendable(payload, memory.people)
        try:
            new_etag, answer = self._client.update_lead_returning(lead_id, sent, etag=etag, select=CRM_COLUMNS)
            return KnownWrite(lead_id, new_etag, 1, crm_outcome(answer), remember(sent, memory, memory.people))
        except D365RecordChangedError:
            return self._after_change(lead_id, payload, memory, force, reserve, requests=1)
        except D365NotFoundError:
            return self._deleted(lead_id, force, requests=1)

    def _leaves(self, state: CrmState | None) -> bool:
        if state in CLOSED:
            return self._policy.closed is ClosedLeads.LEAVE
        if state is CrmState.DELETED:
            return self._policy.deleted is DeletedLeads.LEAVE
        return state is CrmState.MERGED

    def write_found(
        self,
        lead_id: str,
        record: Mapping[str, Any],
        payload: Mapping[str, Any],
        *,
        force: bool,
        reserve: Callable[[str], bool],
        requests: int,
    ) -> KnownWrite:
        """A record the store remembers no write to, as `record` (with its ETag and state) shows it: one
        the lookup found, or our own whose create answered 412. Decided as after a 412, every column
        still Hunter's: closed left alone, merged followed (docs/found-by-simulation.md #8). Raises
        D365NotFoundError when it is gone by the write (the caller creates it), D365Error."""
        return self._decide(lead_id, record, payload, ColumnMemory(), force, reserve, requests=requests, found=True)

    def _after_change(
        self,
        lead_id: str,
        payload: Mapping[str, Any],
        memory: ColumnMemory,
        force: bool,
        reserve: Callable[[str], bool],
        *,
        requests: int,
    ) -> KnownWrite:
        """The record changed since our last write: read it once, then decide."""
        try:
            record = self.read(lead_id, payload)
        except D365NotFoundError:
            return self._deleted(lead_id, force, requests=requests + 1)
        return self._decide(lead_id, record, payload, memory, force, reserve, requests=requests + 1, found=False)

    def _decide(
        self,
        lead_id: str,
        record: Mapping[str, Any],
        payload: Mapping[str, Any],
        memory: ColumnMemory,
        force: bool,
        reserve: Callable[[str], bool],
        *,
        requests: int,
        found: bool,
    ) -> KnownWrite:
        master = merged_into(record)
        if master is not None:
            return self._follow(lead_id, master, payload, reserve, force=force, requests=requests)
        seen = crm_outcome(record)
        if seen is not None and seen.state in CLOSED and not force:
            if self._policy.closed is ClosedLeads.LEAVE:
                return KnownWrite(lead_id, record.get("@odata.etag"), requests, seen, left_alone=True)
            payload = self._ownership.hunters_only(payload)
        people = memory.people if force else self._ownership.changed_by_people(payload, memory, record)
        sent = self._ownership.sendable(payload, people)
        try:
            new_etag, answer = self._client.update_lead_returning(
                lead_id, sent, etag=record.get("@odata.etag"), select=CRM_COLUMNS
            )
        except D365NotFoundError:  # deleted between the read and the write
            if found:
                raise
            return self._deleted(lead_id, force, requests=requests + 1)
        return KnownWrite(lead_id, new_etag, requests + 1, crm_outcome(answer) or seen, remember(sent, memory, people))

    def _follow(
        self,
        lead_id: str,
        master: str,
        payload: Mapping[str, Any],
        reserve: Callable[[str], bool],
        *,
        force: bool,
        requests: int,
    ) -> KnownWrite:
        """Hunter's columns to the record the lead was merged into, following a chain of merges. A
        master another Hunter company holds is left alone: two companies never share one record. A
        master deleted since the merge is a deleted lead (docs/found-by-simulation.md #13)."""
        for _ in range(MAX_MERGE_HOPS):
            if not reserve(master):
                return _merged_away(lead_id, master, requests)
            try:
                record = self.read(master, payload)
                onward = merged_into(record)
                if onward is None:
                    return self._to_master(master, record, payload, force=force, requests=requests + 1)
            except D365NotFoundError:
                if force or self._policy.deleted is DeletedLeads.RECREATE:
                    raise
                return KnownWrite(master, None, requests + 1, CrmOutcome(CrmState.DELETED), left_alone=True)
            requests += 1
            master = onward
        return _merged_away(lead_id, master, requests)

    def _to_master(
        self, master: str, record: Mapping[str, Any], payload: Mapping[str, Any], *, force: bool, requests: int
    ) -> KnownWrite:
        """Hunter's columns to the master read as `record`, unless it is closed (left alone, as any
        closed lead: docs/found-by-simulation.md #7)."""
        seen = crm_outcome(record)
        if seen is not None and seen.state in CLOSED and not force and self._policy.closed is ClosedLeads.LEAVE:
            return KnownWrite(master, record.get("@odata.etag"), requests, seen, left_alone=True)
        sent = self._ownership.hunters_only(payload)
        people = frozenset(column for column in payload if not self._ownership.hunter_owns(column))
        etag, answer = self._client.update_lead_returning(
            master, sent, etag=record.get("@odata.etag"), select=CRM_COLUMNS
        )
        memory = remember(sent, ColumnMemory(), people)
        return KnownWrite(master, etag, requests + 1, crm_outcome(answer) or seen, memory)

    def _deleted(self, lead_id: str, force: bool, *, requests: int) -> KnownWrite:
        if force or self._policy.deleted is DeletedLeads.RECREATE:
            raise RecordDeleted(lead_id, requests)
        return KnownWrite(lead_id, None, requests, CrmOutcome(CrmState.DELETED), left_alone=True)

    def read(self, lead_id: str, payload: Mapping[str, Any]) -> dict:
        """The record's mapped columns and CRM state. Raises D365NotFoundError, D365Error."""
        return self._client.get_lead(lead_id, select=[*payload, *CRM_COLUMNS])


def _merged_away(lead_id: str, master: str, requests: int) -> KnownWrite:
    """Left alone: the lead keeps its record, and says into which record it was merged."""
    return KnownWrite(lead_id, None, requests, CrmOutcome(CrmState.MERGED, merged_into=master), left_alone=True)
