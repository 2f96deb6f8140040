"""Writes many leads in as few Dataverse requests as the org allows, with the single writer's rules.

Matching in bulk: leads with a stored id are written to it; new leads are looked up in one request
(`Microsoft.Dynamics.CRM.In` on the match columns) and adopt a record only as `LeadWriter` would
(a real match, never another company's record); the rest are created with their derived id.
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
from shared.model.ports import LeadTable
from shared.writes.lead_writer import COMPANY_COLUMN, adoptable, deterministic_lead_id, rank_matches

EXECUTION_TIME_LIMIT_CODE = "0x80072321"


@dataclass(frozen=True)
class BulkLead:
    company_id: int
    payload: Mapping[str, Any]
    known_id: str | None
    etag: str | None


@dataclass(frozen=True)
class BulkOutcome:
    """One lead's result: written (lead_id, etag, created), or its own error."""

    lead: BulkLead
    lead_id: str | None = None
    etag: str | None = None
    created: bool = False
    error: D365Error | None = None


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
        requests = 0
        targets: list[tuple[BulkLead, BulkTarget]] = []
        new = [lead for lead in leads if not lead.known_id and not self._key_of(lead)]
        found: dict[int, str] = {}
        if new and self._match_columns:
            adopted, requests = self._match(new, reserve)
            found.update(adopted)
        for lead in leads:
            key = self._key_of(lead)
            lead_id = lead.known_id or found.get(lead.company_id)
            if lead_id is None and not key:
                lead_id = deterministic_lead_id(lead.company_id)
            targets.append(
                (
                    lead,
                    BulkTarget(
                        lead_id=lead_id, payload=lead.payload, key=key, etag=lead.etag if lead.known_id else None
                    ),
                )
            )
        with self.policy.slot():
            if self._client.bulk_support():
                outcomes, sent = self._upsert_multiple(targets)
            else:
                outcomes, sent = self._batch(targets)
        self.policy.on_success()
        return outcomes, requests + sent

    def _key_of(self, lead: BulkLead) -> dict[str, Any] | None:
        if self._alternate_key and lead.payload.get(self._alternate_key) is not None:
            return {self._alternate_key: lead.payload[self._alternate_key]}
        return None

    def _match(self, leads: Sequence[BulkLead], reserve: Callable[[int, str], bool]) -> tuple[dict[int, str], int]:
        """One lookup for all new leads; company id -> the record it adopts."""
        values = {
            column: [str(lead.payload[column]) for lead in leads if lead.payload.get(column)]
            for column in self._match_columns
        }
        select = [COMPANY_COLUMN] if any(COMPANY_COLUMN in lead.payload for lead in leads) else []
        if not any(values.values()):
            return {}, 0
        records = self._client.find_leads_in_any(values, select=select)
        adopted: dict[int, str] = {}
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
                    adopted[lead.company_id] = lead_id
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
        whose row version changed is re-read and written once more, alone."""
        try:
            results = self._client.batch_write([t for _, t in targets])
        except D365RateLimitError as error:
            self.policy.on_throttled(error)
            raise
        sent = 1
        outcomes = []
        for (lead, target), result in zip(targets, results, strict=True):
            if isinstance(result.error, D365RecordChangedError) and target.lead_id:
                try:
                    sent += 2
                    etag = self._client.update_lead(
                        target.lead_id, target.payload, etag=self._client.get_lead_etag(target.lead_id)
                    )
                    outcomes.append(BulkOutcome(lead, lead_id=target.lead_id, etag=etag))
                except D365Error as error:
                    outcomes.append(BulkOutcome(lead, error=error))
            elif result.error is not None:
                outcomes.append(BulkOutcome(lead, error=result.error))
            else:
                outcomes.append(BulkOutcome(lead, lead_id=result.lead_id, etag=result.etag, created=result.created))
        return outcomes, sent
