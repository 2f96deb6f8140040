"""A push with a backlog: the own lead and other due leads in one bulk request. Each other lead's
outcome is recorded here; their own queue messages later find nothing left to do."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from d365.mapping import payload_fingerprint
from shared.model.outcomes import Outcome
from shared.model.ports import SyncStore
from shared.model.sync import LeadState
from shared.usecases.failures import Failure, classify
from shared.usecases.push.attempts import other_attempt
from shared.usecases.push.decision import already_written
from shared.usecases.push.mapper import LeadMapper, warning_texts
from shared.usecases.push.recorder import FailureRecorder
from shared.usecases.push.synced import finish_synced
from shared.writes.bulk_writer import BulkLead, BulkOutcome, BulkWriter

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
    """The own lead's written outcome (or its error), and what became of the others."""

    own: BulkOutcome
    own_item: MappedItem
    requests: int
    others: tuple[str, ...]


class BatchPush:
    def __init__(self, store: SyncStore, bulk: BulkWriter, mapper: LeadMapper, recorder: FailureRecorder) -> None:
        self._store = store
        self._bulk = bulk
        self._mapper = mapper
        self._recorder = recorder

    def write(
        self, company_id: int, token: str, own: MappedItem, others: list[LeadState], context: dict[str, Any]
    ) -> BatchResult:
        """Write the own lead and the due `others` under `token`. Raises what the bulk write raises,
        after recording it for the others."""
        outcomes: list[str] = []
        items = {company_id: own, **self._mapped_others(token, others, outcomes)}
        leads = [
            BulkLead(cid, item.payload, item.state.d365_lead_id, item.state.d365_etag) for cid, item in items.items()
        ]
        try:
            written, requests = self._bulk.write(
                leads, reserve=lambda cid, lead_id: self._store.reserve_lead_id(cid, token, lead_id)
            )
        except Exception as exc:
            failure = classify(exc)
            for cid, item in items.items():
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
        own_outcome: BulkOutcome | None = None
        for outcome in written:
            if outcome.lead.company_id == company_id:
                own_outcome = outcome
            else:
                outcomes.append(self._finish_other(token, items[outcome.lead.company_id], outcome))
        assert own_outcome is not None
        return BatchResult(own_outcome, own, requests, tuple(outcomes))

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

    def _finish_other(self, token: str, item: MappedItem, written: BulkOutcome) -> str:
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
