"""A push with a backlog: the own lead and other due leads in one bulk request. Each other lead's
outcome is recorded here; their own queue messages later find nothing left to do."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any

from d365.mapping import payload_fingerprint
from shared.model.outcomes import Outcome
from shared.model.ports import SyncStore
from shared.model.sync import LeadState, Synced
from shared.usecases.failures import Failure, classify
from shared.usecases.push.attempts import other_attempt
from shared.usecases.push.decision import already_written
from shared.usecases.push.mapper import LeadMapper, warning_texts
from shared.usecases.push.pause import lift_pause
from shared.usecases.push.recorder import FailureRecorder
from shared.usecases.push.synced import finish_synced
from shared.writes.bulk_crm import BatchCrm, Route, Verdict
from shared.writes.bulk_writer import BulkLead, BulkOutcome, BulkWriter
from shared.writes.lead_writer import NEW_LEAD, KnownRecord, LeadWriter

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MappedItem:
    """A claimed lead mapped for a write."""

    state: LeadState
    payload: dict[str, Any]
    fingerprint: str
    warnings: list[str]


@dataclass(frozen=True)
class BatchResult:
    """The own lead's written outcome (or its error; None when it was not in the bulk request and
    the single writer must decide for it), and what became of the others."""

    own: BulkOutcome | None
    own_item: MappedItem
    requests: int
    others: tuple[str, ...]
    own_verdict: Verdict | None = None


class BatchPush:
    def __init__(
        self,
        store: SyncStore,
        bulk: BulkWriter,
        mapper: LeadMapper,
        recorder: FailureRecorder,
        *,
        crm: BatchCrm,
        single: LeadWriter,
    ) -> None:
        self._store = store
        self._bulk = bulk
        self._mapper = mapper
        self._recorder = recorder
        self._crm = crm
        self._single = single

    def write(
        self, company_id: int, token: str, own: MappedItem, others: list[LeadState], context: dict[str, Any]
    ) -> BatchResult:
        """Write the own lead and the due `others` under `token`. Raises what the bulk write raises,
        after recording it for the others."""
        outcomes: list[str] = []
        items = {company_id: own, **self._mapped_others(token, others, outcomes)}
        verdicts, reads = self._verdicts(items)
        for cid, item in items.items():
            if cid != company_id and verdicts[cid].route is not Route.BULK:
                outcomes.append(self._apart(token, item, verdicts[cid]))
        bulk = {cid: item for cid, item in items.items() if verdicts[cid].route is Route.BULK}
        own_outcome: BulkOutcome | None = None
        if bulk:
            written, requests = self._write_bulk(company_id, token, bulk, verdicts, outcomes, context)
            if any(outcome.error is None for outcome in written):
                lift_pause(self._store, context, written=True)  # before any of them is recorded
            for outcome in written:
                cid = outcome.lead.company_id
                if outcome.single:  # closed, merged or changed since read: the single writer decides
                    items[cid] = _reserved(items[cid], outcome.lead_id)
                    if cid != company_id:
                        outcomes.append(self._apart(token, items[cid], Verdict(Route.SINGLE, items[cid].payload)))
                elif cid == company_id:
                    own_outcome = outcome
                else:
                    outcomes.append(self._finish_other(token, items[cid], outcome, verdicts[cid]))
            reads += requests
        return BatchResult(own_outcome, items[company_id], reads, tuple(outcomes), verdicts[company_id])

    def _verdicts(self, items: dict[int, MappedItem]) -> tuple[dict[int, Verdict], int]:
        """Each lead's route, from one read of the batch's known records (none when none is known)."""
        known = {cid: _known(item.state) for cid, item in items.items()}
        columns = sorted({column for item in items.values() for column in item.payload})
        records = self._crm.read(list(known.values()), columns)
        read = 1 if self._crm.read_needed(known.values()) else 0
        return {cid: self._crm.decide(known[cid], items[cid].payload, records) for cid in items}, read

    def _write_bulk(
        self,
        company_id: int,
        token: str,
        bulk: dict[int, MappedItem],
        verdicts: dict[int, Verdict],
        outcomes: list[str],
        context: dict[str, Any],
    ) -> tuple[list[BulkOutcome], int]:
        leads = [
            BulkLead(cid, verdicts[cid].payload, item.state.d365_lead_id, verdicts[cid].etag or item.state.d365_etag)
            for cid, item in bulk.items()
        ]
        try:
            written, requests = self._bulk.write(
                leads, reserve=lambda cid, lead_id: self._store.reserve_lead_id(cid, token, lead_id)
            )
        except Exception as exc:
            failure = classify(exc)
            for cid, item in bulk.items():
                if cid != company_id:
                    outcomes.append(self._record_failure(item.state, token, failure))
            raise
        logger.info(
            "d365_bulk_written company_id=%s leads=%s requests=%s",
            company_id,
            len(leads),
            requests,
            extra={**context, "lead_count": len(leads), "dataverse_requests": requests},
        )
        return written, requests

    def _apart(self, token: str, item: MappedItem, verdict: Verdict) -> str:
        """Another lead of the batch that the bulk request does not write: left alone, or written by
        the single writer (a merge to follow)."""
        state = item.state
        if verdict.route is Route.LEFT_ALONE:
            finish_synced(
                self._store,
                state.lead.company_id,
                token,
                other_attempt(state)(Outcome.SKIPPED, d365_lead_id=state.d365_lead_id),
                version=state.queued_version,
                etag=state.d365_etag,
                fingerprint=state.synced_fingerprint,
                warnings=[],
                synced=Synced(crm=verdict.crm),
            )
            return Outcome.SKIPPED
        try:
            written = self._single.write(
                state.lead.company_id,
                item.payload,
                known=_known(state),
                reserve=lambda lead_id: self._store.reserve_lead_id(state.lead.company_id, token, lead_id),
            )
        except Exception as exc:  # noqa: BLE001 - recorded for that lead alone
            return self._record_failure(state, token, classify(exc))
        outcome = Outcome.SKIPPED if written.left_alone else Outcome.UPDATED
        finish_synced(
            self._store,
            state.lead.company_id,
            token,
            other_attempt(state)(outcome, d365_lead_id=written.lead_id),
            version=state.queued_version,
            etag=written.etag if not written.left_alone else state.d365_etag,
            fingerprint=item.fingerprint if not written.left_alone else state.synced_fingerprint,
            warnings=item.warnings,
            synced=Synced(written.memory, written.crm),
        )
        return outcome

    def _mapped_others(self, token: str, others: list[LeadState], outcomes: list[str]) -> dict[int, MappedItem]:
        """The others to write; those that cannot be mapped, or need no write, are recorded here."""
        items: dict[int, MappedItem] = {}
        for state in others:
            company_id = state.lead.company_id
            try:
                mapped = self._mapper.map(state.lead, {"company_id": company_id})
            except Exception as exc:  # noqa: BLE001 - recorded for that lead alone
                outcomes.append(self._record_failure(state, token, classify(exc)))
                continue
            fingerprint = payload_fingerprint(mapped.payload)
            if already_written(state, fingerprint):
                finish_synced(
                    self._store,
                    company_id,
                    token,
                    other_attempt(state)(Outcome.UNCHANGED),
                    version=state.queued_version,
                    etag=state.d365_etag,
                    fingerprint=fingerprint,
                    warnings=[],
                )
                outcomes.append(Outcome.UNCHANGED)
                continue
            items[company_id] = MappedItem(state, mapped.payload, fingerprint, warning_texts(mapped))
        return items

    def _finish_other(self, token: str, item: MappedItem, written: BulkOutcome, verdict: Verdict) -> str:
        if written.error is not None:
            return self._record_failure(item.state, token, classify(written.error))
        outcome = Outcome.CREATED if written.created else Outcome.UPDATED
        finish_synced(
            self._store,
            item.state.lead.company_id,
            token,
            other_attempt(item.state)(outcome, d365_lead_id=written.lead_id),
            version=item.state.queued_version,
            etag=written.etag,
            fingerprint=item.fingerprint,
            warnings=item.warnings,
            synced=bulk_synced(written, verdict),
        )
        return outcome

    def _record_failure(self, state: LeadState, token: str, failure: Failure) -> str:
        """As the lead's own delivery would record it, except that a transient failure is never
        final here (its own message decides that)."""
        context = {"company_id": state.lead.company_id, "correlation_id": state.lead.correlation_id}
        return self._recorder.record(
            state.lead.company_id,
            token,
            state.queued_version,
            failure,
            other_attempt(state),
            final=not failure.transient,
            context=context,
        )


def _reserved(item: MappedItem, lead_id: str | None) -> MappedItem:
    """The item as the store now knows it: with the record the lookup reserved for it, at a version
    not known (the single writer reads it first)."""
    if lead_id is None or lead_id == item.state.d365_lead_id:
        return item
    return replace(item, state=replace(item.state, d365_lead_id=lead_id, d365_etag=None))


def _known(state: LeadState) -> KnownRecord:
    return KnownRecord(state.d365_lead_id, state.d365_etag, state.memory, state.crm_state, state.force_write)


def bulk_synced(written: BulkOutcome, verdict: Verdict | None) -> Synced:
    """The memory and CRM outcome of a lead written in a bulk request."""
    crm = NEW_LEAD if written.created else (verdict.crm if verdict else None)
    return Synced(verdict.memory if verdict else None, crm)
