"""Bring each lead's outcome back from the CRM: the leads changed since the last read, one request
per page of up to 5,000, their state stored on the lead that holds each record.

One instance reads at a time (a lease in the store); the watermark moves to a page's last
`modifiedon` only once that page is stored, so a failed run loses nothing and the next run reads
that page again (`ge`: the boundary rows twice, harmlessly). A lead closed in the CRM and open again
is due: its newest version is sent to the queue again. Works with or without `hnt_companyid`: a
record is matched by the id the store holds. A lead whose record was merged into one no other lead
holds follows it; the masters of a page are then read (one `In` query, along a chain of merges at
most `MAX_MERGE_HOPS` deep), so the lead shows its master's state, not its merged record's.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from shared.model.crm import CrmOutcome
from shared.model.messages import LeadRef
from shared.model.ports import LeadQueuePort, LeadTable, SyncStore
from shared.writes.known_record import MAX_MERGE_HOPS
from shared.writes.ownership import crm_outcome, merged_into

logger = logging.getLogger(__name__)

READ_COLUMNS = ("statecode", "statuscode", "_ownerid_value", "merged", "_masterid_value")
LEASE_SECONDS = 240.0


@dataclass(frozen=True)
class OutcomeRead:
    pages: int
    records: int
    stored: int
    reopened: int
    read: bool = True  # False: another instance holds the reader


def read_crm_outcomes(
    *, dataverse: LeadTable, store: SyncStore, queues: LeadQueuePort, page_size: int = 5000
) -> OutcomeRead:
    """Raises what the store, the queue or Dataverse raise; what was stored before stays stored."""
    token = str(uuid.uuid4())
    leased, since = store.lease_outcome_reader(token, lease_seconds=LEASE_SECONDS)
    if not leased:
        return OutcomeRead(0, 0, 0, 0, read=False)
    pages = records = stored = 0
    due: list[LeadRef] = []
    try:
        for page in dataverse.changed_leads(_odata_time(since), select=READ_COLUMNS, page_size=page_size):
            pages, records = pages + 1, records + len(page)
            stored += _store_page(page, dataverse=dataverse, store=store, due=due)
            if page and not store.advance_outcome_reader(token, _parse_time(page[-1]["modifiedon"])):
                break  # the lease ran out: another instance goes on from the last page stored
        if due:
            queues.send([ref.to_wire() for ref in due])
    finally:
        store.release_outcome_reader(token)
    logger.info(
        "crm_outcomes_read pages=%s records=%s stored=%s reopened=%s",
        pages,
        records,
        stored,
        len(due),
        extra={"pages": pages, "records": records, "reopened": len(due)},
    )
    return OutcomeRead(pages, records, stored, len(due))


def _store_page(page: list[dict], *, dataverse: LeadTable, store: SyncStore, due: list[LeadRef]) -> int:
    """Each record's outcome on the lead that holds it, then the outcome of the masters our merged
    records point to: a lead that followed its merge shows the master's state (docs/found-by-simulation.md
    #8). Returns how many outcomes were stored."""
    stored = 0
    for _ in range(MAX_MERGE_HOPS + 1):
        masters: set[str] = set()
        for record in page:
            outcome = crm_outcome(record)
            if outcome is None:
                continue
            master = merged_into(record)
            if master is not None:
                outcome = replace(outcome, merged_into=master)
            held = store.record_crm_outcome(str(record["leadid"]), outcome)
            if held is None:  # not a lead of ours
                continue
            stored += 1
            company_id, reopened = held
            _log_outcome(company_id, outcome)
            if reopened is not None:
                due.append(reopened)
            if master is not None:
                masters.add(master)
        if not masters:
            break
        page = dataverse.find_leads_in_any({"leadid": sorted(masters)}, select=READ_COLUMNS)
    return stored


def _log_outcome(company_id: int, outcome: CrmOutcome) -> None:
    """One line per lead seen changed: with the push's own events, what KQL joins for conversion."""
    logger.info(
        "crm_outcome company_id=%s crm_state=%s status_code=%s",
        company_id,
        outcome.state,
        outcome.status_code,
        extra={"company_id": company_id, "crm_state": str(outcome.state), "crm_status_code": outcome.status_code},
    )


def _odata_time(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))
