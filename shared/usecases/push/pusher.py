"""The claim, the single write and its recorded outcome."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from d365.config import DEFAULT_PAUSE_PROBE_SECONDS
from d365.deadline import deadline
from d365.mapping import ChoiceOverrides, payload_fingerprint
from d365.schema_cache import SchemaCache
from d365.throttle import ThrottleGate
from shared.model.messages import LeadMessage, LeadRef
from shared.model.outcomes import Outcome
from shared.model.ports import SyncStore
from shared.model.sync import Attempt, ClaimStatus, LeadState, Synced
from shared.usecases.failures import Failure, classify
from shared.usecases.push.attempts import AttemptClock
from shared.usecases.push.batch import BatchPush, BatchResult, MappedItem, bulk_synced
from shared.usecases.push.decision import Decision, already_written, decide, is_final, leased_delay
from shared.usecases.push.dimensions import lead_dimensions
from shared.usecases.push.mapper import LeadMapper, warning_texts
from shared.usecases.push.pause import PauseRules
from shared.usecases.push.recorder import FailureRecorder
from shared.usecases.push.result import Action, PushResult
from shared.usecases.push.synced import UnrecordedWrite, finish_synced
from shared.writes.bulk_crm import BatchCrm
from shared.writes.bulk_writer import BulkWriter
from shared.writes.lead_writer import KnownRecord, LeadWriter, WriteResult

__all__ = ["LeadPusher", "UnrecordedWrite", "push_deadline_seconds"]

logger = logging.getLogger(__name__)

LEASE_MARGIN_SECONDS = 15.0  # a push stops calling Dataverse this long before its lease ends


def push_deadline_seconds(lease_seconds: float) -> float:
    """How long a push may call Dataverse: its lease, less a margin for recording the outcome and
    for clocks (the lease's end is PostgreSQL's time, the deadline this process's)."""
    return lease_seconds - min(LEASE_MARGIN_SECONDS, lease_seconds / 4)


class LeadPusher:
    def __init__(
        self,
        *,
        store: SyncStore,
        writer: LeadWriter,
        schema: SchemaCache,
        choice_overrides: ChoiceOverrides | None,
        max_dequeue_count: int,
        lease_seconds: float,
        inline_wait_seconds: float = 5.0,
        throttle: ThrottleGate | None = None,
        bulk: BulkWriter | None = None,
        batch_crm: BatchCrm | None = None,
        clock: Callable[[], float] = time.perf_counter,
        rng: random.Random | None = None,
        probe_seconds: float = DEFAULT_PAUSE_PROBE_SECONDS,
    ) -> None:
        self._store = store
        self._writer = writer
        self._mapper = LeadMapper(schema, choice_overrides)
        self._clock = clock
        self._rng = rng or random.Random()
        self._recorder = FailureRecorder(store, probe_seconds=probe_seconds)
        self._probe_seconds = probe_seconds
        self._pause = PauseRules(store, self._mapper.schema, probe_seconds, self._rng, client=writer.client)
        self._max_dequeue_count = max_dequeue_count
        self._lease_seconds = lease_seconds
        self._inline_wait = inline_wait_seconds
        self._throttle = throttle
        self._bulk = bulk
        self._batch = None
        if bulk is not None and batch_crm is not None:
            self._batch = BatchPush(store, bulk, self._mapper, self._recorder, crm=batch_crm, single=writer)

    def push(self, ref: LeadRef | LeadMessage, *, dequeue_count: int) -> PushResult:
        """Raises StoreUnavailable (transient) when PostgreSQL cannot record or claim the lead."""
        if isinstance(ref, LeadMessage):
            ref = ref.ref()
        started = self._clock()
        context: dict[str, Any] = {
            "company_id": ref.company_id,
            "correlation_id": ref.correlation_id,
            "dequeue_count": dequeue_count,
        }
        if ref.accepted is not None:
            self._store.record_queued([ref.accepted])
        claim = self._store.claim(ref.company_id, lease_seconds=self._lease_seconds, probe_seconds=self._probe_seconds)
        if self._throttle is not None and claim.throttled_for_seconds > 0:
            self._throttle.merge_for(claim.throttled_for_seconds)
        if claim.status is ClaimStatus.PAUSED:
            return self._pause.wait(claim, context)
        if claim.status is ClaimStatus.UNKNOWN:
            reason = f"no lead was accepted for company {ref.company_id}"
            logger.error("d365_push_failed company_id=%s: %s", ref.company_id, reason, extra=context)
            return PushResult(Action.POISON, Outcome.FAILED, reason)
        if claim.status is ClaimStatus.LEASED:
            delay = leased_delay(claim.leased_for_seconds, self._rng.uniform(1.0, 1.2))
            logger.info(
                "d365_push_leased company_id=%s: another worker holds the lead; again in %.0f s",
                ref.company_id,
                delay,
                extra=context,
            )
            return PushResult(Action.DEFER, Outcome.LEASED, delay_seconds=delay)
        assert claim.token is not None and claim.state is not None
        self._pause.begin(claim, context)
        attempt = AttemptClock(started, self._clock, ref.correlation_id, dequeue_count)
        try:
            result = self._push_claimed(ref, claim.token, claim.state, claim.throttled_for_seconds, attempt, context)
        except Exception as exc:  # noqa: BLE001 - every failure is classified and recorded, none escapes
            failure = classify(exc)
            if isinstance(exc, UnrecordedWrite):
                failure = replace(failure, unknown_outcome=True)
            result = self._failed(ref, claim.token, claim.state, failure, attempt, context, exc)
        self._pause.settle_probe(claim, result, context)
        return result

    def _push_claimed(
        self,
        ref: LeadRef,
        token: str,
        state: LeadState,
        throttled_for: float,
        attempt: AttemptClock,
        context: dict[str, Any],
    ) -> PushResult:
        company_id = ref.company_id
        context.update(lead_dimensions(state.lead.lead))
        decision = decide(state, ref.version, throttled_for=throttled_for, inline_wait=self._inline_wait)
        if not decision.write:
            assert decision.outcome is not None
            lead_id = None if decision.outcome is Outcome.DEFERRED else state.d365_lead_id
            self._store.release(company_id, token, attempt(decision.outcome, d365_lead_id=lead_id))
            _log_not_written(decision, company_id, context)
            return PushResult(
                decision.action, decision.outcome, delay_seconds=decision.delay_seconds, d365_lead_id=lead_id
            )

        with deadline(push_deadline_seconds(self._lease_seconds), clock=self._clock):
            mapped = self._mapper.map(state.lead, context)
            own = MappedItem(state, mapped.payload, payload_fingerprint(mapped.payload), warning_texts(mapped))
            if already_written(state, own.fingerprint):
                unchanged = attempt(Outcome.UNCHANGED, d365_lead_id=state.d365_lead_id)
                self._finish(company_id, token, own, unchanged, etag=state.d365_etag)
                logger.info("d365_push_unchanged company_id=%s", company_id, extra=context)
                return PushResult(Action.DONE, Outcome.UNCHANGED, d365_lead_id=state.d365_lead_id)
            others = self._due_others(company_id, token)
            if others and self._batch is not None:
                batch = self._batch.write(company_id, token, own, others, context)
                return self._batch_result(ref, token, batch, attempt, context)
            return self._write_single(company_id, token, own, attempt, context)

    def _write_single(
        self, company_id: int, token: str, own: MappedItem, attempt: AttemptClock, context: dict[str, Any]
    ) -> PushResult:
        state = own.state
        written = self._writer.write(
            company_id,
            own.payload,
            known=KnownRecord(state.d365_lead_id, state.d365_etag, state.memory, state.crm_state, state.force_write),
            reserve=lambda lead_id: self._store.reserve_lead_id(company_id, token, lead_id),
        )
        if written.left_alone:
            return self._left_alone(company_id, token, own, written, attempt, context)
        self._pause.lift(context)
        outcome = Outcome.CREATED if written.created else Outcome.UPDATED
        self._finish(
            company_id,
            token,
            own,
            attempt(outcome, d365_lead_id=written.lead_id, dataverse_requests=written.requests),
            etag=written.etag,
            synced=Synced(written.memory, written.crm),
        )
        return self._success(company_id, written.lead_id, outcome, attempt, context)

    def _left_alone(
        self,
        company_id: int,
        token: str,
        own: MappedItem,
        written: WriteResult,
        attempt: AttemptClock,
        context: dict[str, Any],
    ) -> PushResult:
        """Closed, deleted or merged in the CRM: nothing written, not an error. The version counts as
        handled (a re-send costs nothing); the status shows the CRM state, and why."""
        state, crm = own.state, written.crm
        row = attempt(Outcome.SKIPPED, d365_lead_id=written.lead_id, dataverse_requests=written.requests)
        kept = replace(own, fingerprint=state.synced_fingerprint or "", warnings=[])
        # Left alone from the state the store knew (no request): nothing new seen, so the stored
        # outcome (its status code, when it was seen) stays (docs/found-by-simulation.md #11).
        seen = crm if written.requests else None
        self._finish(company_id, token, kept, row, etag=state.d365_etag, synced=Synced(crm=seen))
        _log_left_alone(company_id, written, context)
        return PushResult(Action.DONE, Outcome.SKIPPED, d365_lead_id=written.lead_id)

    def _due_others(self, company_id: int, token: str) -> list[LeadState]:
        if self._bulk is None or self._bulk.policy.size() < 2:
            return []
        limit = self._bulk.policy.size() - 1
        return self._store.claim_due(company_id, token, limit=limit, lease_seconds=self._lease_seconds)

    def _batch_result(
        self, ref: LeadRef, token: str, batch: BatchResult, attempt: AttemptClock, context: dict[str, Any]
    ) -> PushResult:
        own, item = batch.own, batch.own_item
        if own is None:  # left out of the bulk request: the single writer decides
            result = self._write_single(ref.company_id, token, item, attempt, context)
        elif own.error is not None:
            failure = classify(own.error)
            result = self._failed(ref, token, item.state, failure, attempt, context, own.error)
        else:
            assert own.lead_id is not None
            outcome = Outcome.CREATED if own.created else Outcome.UPDATED
            attempt_row = attempt(outcome, d365_lead_id=own.lead_id, dataverse_requests=batch.requests)
            self._finish(
                ref.company_id, token, item, attempt_row, etag=own.etag, synced=bulk_synced(own, batch.own_verdict)
            )
            result = self._success(ref.company_id, own.lead_id, outcome, attempt, context)
        return replace(result, batch_outcomes=batch.others)

    def _finish(
        self,
        company_id: int,
        token: str,
        item: MappedItem,
        attempt: Attempt,
        *,
        etag: str | None,
        synced: Synced | None = None,
    ) -> None:
        finish_synced(
            self._store,
            company_id,
            token,
            attempt,
            version=item.state.queued_version,
            etag=etag,
            fingerprint=item.fingerprint or None,
            warnings=item.warnings,
            synced=synced,
        )

    def _success(
        self, company_id: int, lead_id: str, outcome: Outcome, attempt: AttemptClock, context: dict[str, Any]
    ) -> PushResult:
        duration_ms = attempt.elapsed_ms()
        logger.info(
            "d365_push_success company_id=%s d365_lead_id=%s outcome=%s duration_ms=%.1f",
            company_id,
            lead_id,
            outcome,
            duration_ms,
            extra={**context, "d365_lead_id": lead_id, "duration_ms": duration_ms, "outcome": outcome},
        )
        return PushResult(Action.DONE, outcome, d365_lead_id=lead_id)

    def _failed(
        self,
        ref: LeadRef,
        token: str,
        state: LeadState,
        failure: Failure,
        attempt: AttemptClock,
        context: dict[str, Any],
        exc: BaseException,
    ) -> PushResult:
        if failure.retry_after is None and failure.stale_schema:
            self._mapper.schema.invalidate()
        dequeue_count = context["dequeue_count"]
        final = is_final(
            transient=failure.transient, dequeue_count=dequeue_count, max_dequeue_count=self._max_dequeue_count
        )
        outcome = self._recorder.record(
            ref.company_id, token, state.queued_version, failure, attempt, final=final, context=context, exc=exc
        )
        if outcome is Outcome.PAUSED:
            delay = self._probe_seconds * self._rng.uniform(1.0, 1.2)
            return PushResult(Action.DEFER, outcome, failure.reason, delay_seconds=delay)
        if outcome is Outcome.DEFERRED:
            return PushResult(Action.DEFER, outcome, failure.reason, delay_seconds=failure.retry_after or 0.0)
        if not failure.transient:
            refused = failure.http_status is not None
            return PushResult(Action.POISON, Outcome.FAILED, failure.reason, refused_by_dataverse=refused)
        return PushResult(Action.RETRY, outcome, failure.reason)


def _log_left_alone(company_id: int, written: WriteResult, context: dict[str, Any]) -> None:
    state = written.crm.state if written.crm else None
    logger.info(
        "d365_push_left_alone company_id=%s d365_lead_id=%s crm_state=%s: a person's work in the CRM is not undone",
        company_id,
        written.lead_id,
        state,
        extra={**context, "d365_lead_id": written.lead_id, "crm_state": state},
    )


def _log_not_written(decision: Decision, company_id: int, context: dict[str, Any]) -> None:
    if decision.outcome is Outcome.DEFERRED:
        logger.info(
            "d365_push_deferred company_id=%s: %s for %.0f s",
            company_id,
            decision.why,
            decision.delay_seconds,
            extra={**context, "retry_after": decision.delay_seconds},
        )
    else:
        logger.info("d365_push_%s company_id=%s: %s", decision.outcome, company_id, decision.why, extra=context)
