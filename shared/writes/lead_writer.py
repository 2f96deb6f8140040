"""Finds the Dataverse record of one Hunter company's lead and writes it, never a second one and
never another company's.

Matching, in order: (1) the record id stored for the company, updated with `If-Match: <the row
version of our last write>`, so a write racing a newer one fails (412) instead of overwriting it;
(2) the alternate key, when one is configured; (3) one lookup of existing leads by the configured
columns, adopting only a record that really matches on one of them and belongs to no other
company (see `adoptable`); (4) a create with an id derived from the company id, sent as `PATCH` +
`If-None-Match: *`, so a create whose answer was lost is found, not repeated. Never a bare `POST`.
A stored id that answers 404 goes through (2) to (4).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from d365.errors import D365DuplicateError, D365NotFoundError
from shared.model.crm import ColumnMemory, CrmOutcome, CrmState
from shared.model.ports import LeadTable
from shared.writes.known_record import CrmPolicy, KnownRecordWriter, KnownWrite, RecordDeleted
from shared.writes.ownership import CRM_COLUMNS, ColumnOwnership

logger = logging.getLogger(__name__)

# Fixed forever: changing it would make every lead look new to Dataverse.
LEAD_ID_NAMESPACE = uuid.UUID("7c1f6a4e-2b1d-5c8e-9f3a-48d0e6b1a2c4")
COMPANY_COLUMN = "hnt_companyid"
NEW_LEAD = CrmOutcome(CrmState.OPEN, status_code=1)  # Dataverse creates a lead Open / New


def deterministic_lead_id(company_id: int) -> str:
    return str(uuid.uuid5(LEAD_ID_NAMESPACE, f"hunter-company:{company_id}"))


def is_deterministic_id(lead_id: str) -> bool:
    """Whether the id is one this app derives for some company: Dataverse itself never makes
    version-5 (name-based) GUIDs."""
    try:
        return uuid.UUID(lead_id).version == 5
    except ValueError:
        return False


@dataclass(frozen=True)
class WriteResult:
    lead_id: str
    etag: str | None
    created: bool
    requests: int
    crm: CrmOutcome | None = None  # the lead's CRM outcome, when the answer showed it
    memory: ColumnMemory | None = None  # what this write sent, and the columns people own
    left_alone: bool = False  # nothing written: the lead is closed, deleted or merged in the CRM


@dataclass(frozen=True)
class KnownRecord:
    """What the store knows of the lead's record."""

    lead_id: str | None = None
    etag: str | None = None
    memory: ColumnMemory = field(default_factory=ColumnMemory)
    crm_state: CrmState | None = None
    force: bool = False


class LeadWriter:
    def __init__(
        self,
        client: LeadTable,
        *,
        alternate_key: str | None,
        match_columns: Sequence[str],
        ownership: ColumnOwnership | None = None,
        crm_policy: CrmPolicy | None = None,
    ) -> None:
        self.client = client
        self._client = client
        self._alternate_key = alternate_key
        self._match_columns = tuple(match_columns)
        self._known = KnownRecordWriter(client, ownership or ColumnOwnership(), crm_policy or CrmPolicy())

    def write(
        self,
        company_id: int,
        payload: Mapping[str, Any],
        *,
        known: KnownRecord,
        reserve: Callable[[str], bool],
    ) -> WriteResult:
        """Upsert the company's lead. `reserve(lead_id)` records a found record as the company's
        before it is adopted, and answers False when another company holds it.
        Raises d365.errors.D365Error subclasses for the caller to classify."""
        counter = _Counter()
        if known.lead_id:
            try:
                return self._write_known(known, payload, reserve)
            except RecordDeleted as deleted:
                counter.n += deleted.requests
                logger.warning(
                    "d365_lead_missing company_id=%s d365_lead_id=%s: matching it again",
                    company_id,
                    known.lead_id,
                    extra={"company_id": company_id, "d365_lead_id": known.lead_id},
                )

        key_value = payload.get(self._alternate_key) if self._alternate_key else None
        if self._alternate_key and key_value is not None:
            counter.n += 1
            lead_id, new_etag, created = self._client.upsert_lead_by_key({self._alternate_key: key_value}, payload)
            return WriteResult(lead_id, new_etag, created=created, requests=counter.n, memory=_first(payload))

        found = self._find(company_id, payload, counter, reserve)
        if found is not None:
            try:
                written = self._known.write_found(
                    str(found["leadid"]), found, payload, force=known.force, reserve=reserve, requests=counter.n
                )
                return _result(written)
            except D365NotFoundError:  # deleted between the lookup and the write
                counter.n += 1
        return self._create(company_id, payload, counter, force=known.force, reserve=reserve)

    def _write_known(
        self, known: KnownRecord, payload: Mapping[str, Any], reserve: Callable[[str], bool]
    ) -> WriteResult:
        assert known.lead_id is not None
        written = self._known.write(
            known.lead_id,
            payload,
            etag=known.etag,
            memory=known.memory,
            known_state=known.crm_state,
            force=known.force,
            reserve=reserve,
        )
        return _result(written)

    def _find(
        self, company_id: int, payload: Mapping[str, Any], counter: _Counter, reserve: Callable[[str], bool]
    ) -> Mapping[str, Any] | None:
        """The record to adopt (reserved), as the lookup shows it: its ETag and CRM state too."""
        matches = [(column, payload[column]) for column in self._match_columns if payload.get(column)]
        if not matches:
            return None
        select = [*([COMPANY_COLUMN] if COMPANY_COLUMN in payload else []), *CRM_COLUMNS]
        counter.n += 1
        found = self._client.find_leads(matches, select=select)
        own_id = deterministic_lead_id(company_id)
        for record in rank_matches(found, matches, own_id):
            if adoptable(record, company_id, own_id) and reserve(str(record["leadid"])):
                return record
        return None

    def _create(
        self,
        company_id: int,
        payload: Mapping[str, Any],
        counter: _Counter,
        *,
        force: bool,
        reserve: Callable[[str], bool],
    ) -> WriteResult:
        lead_id = deterministic_lead_id(company_id)
        try:
            counter.n += 1
            new_etag = self._client.create_lead(lead_id, payload)
            logger.info(
                "d365_lead_created company_id=%s d365_lead_id=%s",
                company_id,
                lead_id,
                extra={"company_id": company_id, "d365_lead_id": lead_id},
            )
            return WriteResult(
                lead_id, new_etag, created=True, requests=counter.n, crm=NEW_LEAD, memory=_first(payload)
            )
        except D365DuplicateError as duplicate:
            # Our own earlier create whose answer was lost: read it, as people may have closed, merged or
            # edited it since (docs/found-by-simulation.md #8); or a unique key held by another record, in
            # which case the read finds nothing and the duplicate error stands.
            try:
                counter.n += 1
                record = self._known.read(lead_id, payload)
                return _result(
                    self._known.write_found(lead_id, record, payload, force=force, reserve=reserve, requests=counter.n)
                )
            except D365NotFoundError:
                raise duplicate from None


def _result(written: KnownWrite) -> WriteResult:
    return WriteResult(
        written.lead_id,
        written.etag,
        created=False,
        requests=written.requests,
        crm=written.crm,
        memory=written.memory,
        left_alone=written.left_alone,
    )


def _first(payload: Mapping[str, Any]) -> ColumnMemory:
    """The memory of a first write to a record: all it sent, no column taken over yet."""
    return ColumnMemory(dict(payload))


class _Counter:
    def __init__(self) -> None:
        self.n = 0


def rank_matches(
    found: Sequence[Mapping[str, Any]], matches: Sequence[tuple[str, Any]], own_id: str
) -> list[Mapping[str, Any]]:
    """Our own record first; then the records that really match, by the first configured column
    they match on, in the lookup's (stable) order. A record that matches no column is dropped."""
    own = [r for r in found if str(r.get("leadid")) == own_id]
    ranked = list(own)
    for column, value in matches:
        wanted = str(value).casefold()
        ranked += [r for r in found if r not in ranked and str(r.get(column) or "").casefold() == wanted]
    return ranked


def adoptable(record: Mapping[str, Any], company_id: int, own_id: str) -> bool:
    """Never another company's record: not one stamped with another company id, not one whose id is
    another company's derived id. (One held by another company in the store is refused by `reserve`.)
    A record made by hand in the CRM, with no company id, may be adopted."""
    lead_id = str(record.get("leadid"))
    if lead_id == own_id:
        return True
    stamped = record.get(COMPANY_COLUMN)
    if stamped is not None and stamped != company_id:
        return False
    return not is_deterministic_id(lead_id)
