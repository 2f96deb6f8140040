"""Writes many leads in as few Dataverse requests as the org allows, with the single writer's rules.

Matching in bulk: leads with a stored id are written to it; new leads are looked up in one request
(`Microsoft.Dynamics.CRM.In` on the match columns, and on their derived ids: a create whose answer
was lost) and adopt a record only as `LeadWriter` would (a real match, never another company's
record); the rest are created with their derived id. A found record that people closed or merged is
not written here: it is left to the single writer (`single`), which decides as for any lead of ours.
Writing: one `UpsertMultiple` per batch where the org supports it for `lead`, else one `$batch` of
conditional upserts. On a standard table one bad record fails a whole `UpsertMultiple`: the batch
is split in halves until the bad records are alone, so each fails with its own reason and the rest
are written. A throttled or transient failure of a whole request is raised to the caller.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from d365.bulk import BulkTarget
from d365.errors import D365Error, D365RateLimitError, D365RecordChangedError
from shared.model.crm import CLOSED
from shared.model.ports import LeadTable
from shared.writes.lead_writer import COMPANY_COLUMN, adoptable, deterministic_lead_id, rank_matches
from shared.writes.ownership import CRM_COLUMNS, crm_outcome, merged_into

EXECUTION_TIME_LIMIT_CODE = "0x80072321"


@dataclass(frozen=True)
class BulkLead:
    company_id: int
    payload: Mapping[str, Any]
    known_id: str | None
    etag: str | None


@dataclass(frozen=True)
class BulkOutcome:
    """One lead's result: written (lead_id, etag, created), its own error, or `single`: not written,
    for the single writer to read and decide (its record `lead_id`, reserved, is closed or merged,
    or changed since the batch read it: docs/found-by-simulation.md #10)."""

    lead: BulkLead
    lead_id: str | None = None
    etag: str | None = None
    created: bool = False
    error: D365Error | None = None
    single: bool = False


class BulkPolicy:
    """How many leads go in one request, and how many bulk requests run at once in this process,
    adapting to what Dataverse says: the execution-time limit's 429 halves the batch, each success
    grows it back towards the setting; concurrency follows `x-ms-dop-hint`."""

    def __init__(self, max_size: int, *, dop_hint: Callable[[], int | None] = lambda: None) -> None:
        self.max_size = max_size
        self._size = max_size
        self._dop_hint = dop_hint
        self._running = 0
        self._changed = threading.Condition()

    def size(self) -> int:
        with self._changed:
            return self._size

    def on_success(self) -> None:
        with self._changed:
            self._size = min(self.max_size, self._size + max(1, self._size // 10))

    def on_throttled(self, error: D365RateLimitError) -> None:
        if error.code == EXECUTION_TIME_LIMIT_CODE:
            with self._changed:
                self._size = max(2, self._size // 2)

    @contextmanager
    def slot(self) -> Iterator[None]:
        with self._changed:
            self._changed.wait_for(lambda: self._running < max(1, self._dop_hint() or 4))
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()


class BulkWriter:
    def __init__(
        self, client: LeadTable, *, alternate_key: str | None, match_columns: Sequence[str], policy: BulkPolicy
    ) -> None:
        self._client = client
        self._alternate_key = alternate_key
        self._match_columns = tuple(match_columns)
        self.policy = policy

    def write(self, leads: Sequence[BulkLead], *, reserve: Callable[[int, str], bool]) -> tuple[list[BulkOutcome], int]:
        """Every lead written or failed on its own; returns the outcomes and the requests sent.
        `reserve(company_id, lead_id)` records a found record as that company's before adopting it.
        Raises D365Error when a whole request fails in a way no split can help (429, 5xx, dropped)."""
        new = [lead for lead in leads if not lead.known_id and not self._key_of(lead)]
        found: dict[int, Mapping[str, Any]] = {}
        requests = 0
        if new and self._match_columns:
            found, requests = self._match(new, reserve)
        single = [
            BulkOutcome(lead, lead_id=str(found[lead.company_id]["leadid"]), single=True)
            for lead in new
            if lead.company_id in found and not _open(found[lead.company_id])
        ]
        apart = {outcome.lead.company_id for outcome in single}
        targets = [
            (lead, self._target(lead, found.get(lead.company_id))) for lead in leads if lead.company_id not in apart
        ]
        if not targets:
            return single, requests
        with self.policy.slot():
            if self._client.bulk_support():
                outcomes, sent = self._upsert_multiple(targets)
            else:
                outcomes, sent = self._batch(targets)
        self.policy.on_success()
        return single + outcomes, requests + sent

    def _target(self, lead: BulkLead, found: Mapping[str, Any] | None) -> BulkTarget:
        key = self._key_of(lead)
        lead_id = lead.known_id or (str(found["leadid"]) if found is not None else None)
        if lead_id is None and not key:
            lead_id = deterministic_lead_id(lead.company_id)
        # A found record is written at the version the lookup saw (in a $batch; UpsertMultiple has no If-Match).
        etag = lead.etag if lead.known_id else (found.get("@odata.etag") if found is not None else None)
        return BulkTarget(lead_id=lead_id, payload=lead.payload, key=key, etag=etag)

    def _key_of(self, lead: BulkLead) -> dict[str, Any] | None:
        if self._alternate_key and lead.payload.get(self._alternate_key) is not None:
            return {self._alternate_key: lead.payload[self._alternate_key]}
        return None

    def _match(
        self, leads: Sequence[BulkLead], reserve: Callable[[int, str], bool]
    ) -> tuple[dict[int, Mapping[str, Any]], int]:
        """One lookup for all new leads; company id -> the record it adopts (reserved), as the lookup
        shows it (with its CRM state)."""
        values = {
            column: [str(lead.payload[column]) for lead in leads if lead.payload.get(column)]
            for column in self._match_columns
        }
        if not any(values.values()):
            return {}, 0
        # Their own records too: a create whose answer was lost (people may have worked it since).
        values["leadid"] = [deterministic_lead_id(lead.company_id) for lead in leads]
        select = [*([COMPANY_COLUMN] if any(COMPANY_COLUMN in lead.payload for lead in leads) else []), *CRM_COLUMNS]
        records = self._client.find_leads_in_any(values, select=select)
        adopted: dict[int, Mapping[str, Any]] = {}
        taken: set[str] = set()
        for lead in leads:
            matches = [(column, lead.payload[column]) for column in self._match_columns if lead.payload.get(column)]
            own_id = deterministic_lead_id(lead.company_id)
            for record in rank_matches(records, matches, own_id):
                lead_id = str(record["leadid"])
                if (
                    lead_id not in taken
                    and adoptable(record, lead.company_id, own_id)
                    and reserve(lead.company_id, lead_id)
                ):
                    adopted[lead.company_id] = record
                    taken.add(lead_id)
                    break
        return adopted, 1

    def _upsert_multiple(self, targets: Sequence[tuple[BulkLead, BulkTarget]]) -> tuple[list[BulkOutcome], int]:
        """All or nothing per request: a permanent failure splits the batch until each bad lead is
        alone (or named by Dataverse), so it fails with its own reason and the rest are written."""
        plain = [(lead, BulkTarget(lead_id=t.lead_id, payload=t.payload, key=t.key)) for lead, t in targets]
        try:
            self._client.upsert_multiple([t for _, t in plain])
        except D365RateLimitError as error:
            self.policy.on_throttled(error)
            raise
        except D365Error as error:
            if error.transient:
                raise
            if len(plain) == 1:
                return [BulkOutcome(plain[0][0], error=error)], 1
            named = [i for i in error.failed_indexes if 0 <= i < len(plain)]
            if named:
                failed = [BulkOutcome(plain[i][0], error=error) for i in named]
                rest = [pair for i, pair in enumerate(plain) if i not in named]
                outcomes, sent = self._upsert_multiple(rest) if rest else ([], 0)
                return failed + outcomes, 1 + sent
            middle = len(plain) // 2
            left, left_sent = self._upsert_multiple(plain[:middle])
            right, right_sent = self._upsert_multiple(plain[middle:])
            return left + right, 1 + left_sent + right_sent
        # UpsertMultiple answers no row versions: the next single update sends If-Match: *.
        return [
            BulkOutcome(
                lead,
                lead_id=t.lead_id,
                created=lead.known_id is None and t.lead_id == deterministic_lead_id(lead.company_id),
            )
            for lead, t in plain
        ], 1

    def _batch(self, targets: Sequence[tuple[BulkLead, BulkTarget]]) -> tuple[list[BulkOutcome], int]:
        """One `$batch` of independent upserts: each lead succeeds or fails on its own. An update
        whose row version changed is left to the single writer."""
        try:
            results = self._client.batch_write([t for _, t in targets])
        except D365RateLimitError as error:
            self.policy.on_throttled(error)
            raise
        sent = 1
        outcomes = []
        for (lead, target), result in zip(targets, results, strict=True):
            if isinstance(result.error, D365RecordChangedError) and target.lead_id:
                # Changed since the batch read it: writing it again at a re-read version would undo the
                # change. The single writer reads it and decides (docs/found-by-simulation.md #10).
                outcomes.append(BulkOutcome(lead, lead_id=target.lead_id, single=True))
            elif result.error is not None:
                outcomes.append(BulkOutcome(lead, error=result.error))
            else:
                outcomes.append(BulkOutcome(lead, lead_id=result.lead_id, etag=result.etag, created=result.created))
        return outcomes, sent


def _open(record: Mapping[str, Any]) -> bool:
    """Neither closed nor merged in the CRM (a record that shows no state counts as open)."""
    outcome = crm_outcome(record)
    return merged_into(record) is None and (outcome is None or outcome.state not in CLOSED)
