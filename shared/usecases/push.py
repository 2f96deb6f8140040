"""The push use case: one queue message -> the company's newest lead written to Dataverse (or
nothing to do) -> its recorded outcome.

Safe to run any number of times, on any number of workers: the lead is leased in PostgreSQL for
the push, a write never starts after the lease's deadline, the newest stored version is the one
written, an unchanged payload costs no request, and every write is conditional. Whatever fails is
classified and recorded here; `push` raises only `StoreUnavailable` when PostgreSQL cannot even
claim the lead.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from enum import StrEnum
from typing import Any

from d365.deadline import deadline
from d365.mapping import ChoiceOverrides, MappedLead, map_lead, payload_fingerprint
from d365.schema_cache import SchemaCache
from d365.throttle import ThrottleGate
from shared.model.errors import StoreUnavailable
from shared.model.messages import LeadMessage, LeadRef
from shared.postgres.store import Attempt, ClaimStatus, LeadState, LeadStore
from shared.usecases.failures import Failure, classify
from shared.writes.bulk_writer import BulkLead, BulkWriter
from shared.writes.lead_writer import LeadWriter

logger = logging.getLogger(__name__)

LEASE_MARGIN_SECONDS = 15.0  # a push stops calling Dataverse this long before its lease ends
# A leased lead is looked at again after this at most: a bulk write holds many leads for a moment,
# not for its whole lease.
LEASED_RECHECK_SECONDS = 10.0


def push_deadline_seconds(lease_seconds: float) -> float:
    """How long a push may call Dataverse: its lease, less a margin for recording the outcome and
    for clocks (the lease's end is PostgreSQL's time, the deadline this process's)."""
    return lease_seconds - min(LEASE_MARGIN_SECONDS, lease_seconds / 4)


class UnrecordedWrite(StoreUnavailable):
    """The lead was written, and PostgreSQL could not record it: like a write whose answer was lost,
    it must never end the lead `failed` (the record holds the version)."""


class Action(StrEnum):
    DONE = "done"  # acknowledge the message
    POISON = "poison"  # can never succeed: to the poison queue, then acknowledge
    DEFER = "defer"  # throttled or leased: re-enqueue after `delay_seconds`, then acknowledge
    RETRY = "retry"  # transient: let the runtime deliver it again


@dataclass(frozen=True)
class PushResult:
    action: Action
    outcome: str
    reason: str | None = None
    delay_seconds: float = 0.0
    d365_lead_id: str | None = None
    # The outcomes of the other leads written (or failed) in this push's bulk request. One that
    # failed for good reaches the poison queue with its own message, which finds it failed.
    batch_outcomes: tuple[str, ...] = ()


class LeadPusher:
    def __init__(
        self,
        *,
        store: LeadStore,
        writer: LeadWriter,
        schema: SchemaCache,
        choice_overrides: ChoiceOverrides | None,
        max_dequeue_count: int,
        lease_seconds: float,
        inline_wait_seconds: float = 5.0,
        throttle: ThrottleGate | None = None,
        bulk: BulkWriter | None = None,
        clock: Callable[[], float] = time.perf_counter,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._writer = writer
        self._schema = schema
        self._overrides = choice_overrides
        self._max_dequeue_count = max_dequeue_count
        self._lease_seconds = lease_seconds
        self._inline_wait = inline_wait_seconds
        self._throttle = throttle
        self._bulk = bulk
        self._clock = clock
        self._rng = rng or random.Random()
        self._reported_missing: set[str] = set()
        self._reported_lock = threading.Lock()

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
        claim = self._store.claim(ref.company_id, lease_seconds=self._lease_seconds)
        if self._throttle is not None and claim.throttled_for_seconds > 0:
            self._throttle.merge_for(claim.throttled_for_seconds)
        if claim.status is ClaimStatus.UNKNOWN:
            reason = f"no lead was accepted for company {ref.company_id}"
            logger.error("d365_push_failed company_id=%s: %s", ref.company_id, reason, extra=context)
            return PushResult(Action.POISON, "failed", reason)
        if claim.status is ClaimStatus.LEASED:
            delay = min(max(claim.leased_for_seconds, 1.0), LEASED_RECHECK_SECONDS) * self._rng.uniform(1.0, 1.2)
            logger.info(
                "d365_push_leased company_id=%s: another worker holds the lead; again in %.0f s",
                ref.company_id,
                delay,
                extra=context,
            )
            return PushResult(Action.DEFER, "leased", delay_seconds=delay)
        assert claim.token is not None and claim.state is not None
        attempt = _AttemptFactory(started, self._clock, ref.correlation_id, dequeue_count)
        try:
            return self._push_claimed(ref, claim.token, claim.state, claim.throttled_for_seconds, attempt, context)
        except Exception as exc:  # noqa: BLE001 - every failure is classified and recorded, none escapes
            failure = classify(exc)
            if isinstance(exc, UnrecordedWrite):
                failure = replace(failure, unknown_outcome=True)
            return self._failed(ref, claim.token, claim.state, failure, attempt, dequeue_count, context, exc)

    def _push_claimed(
        self,
        ref: LeadRef,
        token: str,
        state: LeadState,
        throttled_for: float,
        attempt: _AttemptFactory,
        context: dict[str, Any],
    ) -> PushResult:
        company_id, version = ref.company_id, state.queued_version
        if state.failed_version is not None and state.failed_version >= version:
            self._store.release(company_id, token, attempt("skipped", d365_lead_id=state.d365_lead_id))
            logger.info(
                "d365_push_skipped company_id=%s: the newest version failed finally; replay it to retry",
                company_id,
                extra=context,
            )
            if ref.version >= state.failed_version:
                # The failed version's own message: it belongs in the poison queue, where replay finds
                # it, even if the delivery that failed could not put it there (a duplicate is harmless).
                return PushResult(Action.POISON, "skipped", d365_lead_id=state.d365_lead_id)
            return PushResult(Action.DONE, "skipped", d365_lead_id=state.d365_lead_id)
        if state.synced_version is not None and state.synced_version >= version:
            outcome = "skipped" if ref.version < state.synced_version else "unchanged"
            self._store.release(company_id, token, attempt(outcome, d365_lead_id=state.d365_lead_id))
            logger.info(
                "d365_push_%s company_id=%s: the newest version is already synced", outcome, company_id, extra=context
            )
            return PushResult(Action.DONE, outcome, d365_lead_id=state.d365_lead_id)
        if throttled_for > self._inline_wait:
            self._store.release(company_id, token, attempt("deferred"))
            logger.info(
                "d365_push_deferred company_id=%s: Dataverse is throttling every worker for %.0f s",
                company_id,
                throttled_for,
                extra={**context, "retry_after": throttled_for},
            )
            return PushResult(Action.DEFER, "deferred", delay_seconds=throttled_for)

        with deadline(push_deadline_seconds(self._lease_seconds), clock=self._clock):
            mapped = self._map(state.lead, context)
            fingerprint = payload_fingerprint(mapped.payload)
            warnings = [f"{w.column}: {w.reason}" for w in mapped.warnings]
            if state.d365_lead_id and fingerprint == state.synced_fingerprint:
                self._finish_synced(
                    company_id,
                    token,
                    attempt("unchanged", d365_lead_id=state.d365_lead_id),
                    version,
                    state.d365_etag,
                    fingerprint,
                    warnings,
                )
                logger.info("d365_push_unchanged company_id=%s", company_id, extra=context)
                return PushResult(Action.DONE, "unchanged", d365_lead_id=state.d365_lead_id)

            if self._bulk is not None and self._bulk.policy.size() > 1:
                others = self._store.claim_due(
                    company_id, token, limit=self._bulk.policy.size() - 1, lease_seconds=self._lease_seconds
                )
                if others:
                    own = _Item(state, mapped.payload, fingerprint, warnings)
                    return self._push_batch(ref, token, own, others, attempt, context)

            written = self._writer.write(
                company_id,
                mapped.payload,
                known_id=state.d365_lead_id,
                etag=state.d365_etag,
                reserve=lambda lead_id: self._store.reserve_lead_id(company_id, token, lead_id),
            )

        outcome = "created" if written.created else "updated"
        self._finish_synced(
            ref.company_id,
            token,
            attempt(outcome, d365_lead_id=written.lead_id, dataverse_requests=written.requests),
            version,
            written.etag,
            fingerprint,
            warnings,
        )
        return self._success(ref.company_id, written.lead_id, outcome, attempt, context)

    def _success(
        self,
        company_id: int,
        lead_id: str,
        outcome: str,
        attempt: _AttemptFactory,
        context: dict[str, Any],
        **batch: Any,
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
        return PushResult(Action.DONE, outcome, d365_lead_id=lead_id, **batch)

    def _push_batch(
        self,
        ref: LeadRef,
        token: str,
        own: _Item,
        others: list[LeadState],
        attempt: _AttemptFactory,
        context: dict[str, Any],
    ) -> PushResult:
        """The own lead and other due leads in one bulk write. Each other lead's outcome is recorded
        here; their own queue messages later find nothing left to do."""
        assert self._bulk is not None
        items = {ref.company_id: own}
        outcomes: list[str] = []
        for state in others:
            company_id = state.lead.company_id
            try:
                mapped = self._map(state.lead, {"company_id": company_id})
            except Exception as exc:  # noqa: BLE001 - recorded for that lead alone
                self._record_other_failure(state, token, classify(exc), outcomes)
                continue
            fingerprint = payload_fingerprint(mapped.payload)
            if state.d365_lead_id and fingerprint == state.synced_fingerprint:
                self._finish_synced(
                    company_id,
                    token,
                    self._other_attempt(state, "unchanged"),
                    state.queued_version,
                    state.d365_etag,
                    fingerprint,
                    [],
                )
                outcomes.append("unchanged")
                continue
            items[company_id] = _Item(
                state, mapped.payload, fingerprint, [f"{w.column}: {w.reason}" for w in mapped.warnings]
            )
        leads = [
            BulkLead(company_id, item.payload, item.state.d365_lead_id, item.state.d365_etag)
            for company_id, item in items.items()
        ]
        try:
            written, requests = self._bulk.write(
                leads, reserve=lambda company_id, lead_id: self._store.reserve_lead_id(company_id, token, lead_id)
            )
        except Exception as exc:
            failure = classify(exc)
            for company_id, item in items.items():
                if company_id != ref.company_id:
                    self._record_other_failure(item.state, token, failure, outcomes)
            raise
        logger.info(
            "d365_bulk_written company_id=%s leads=%s requests=%s",
            ref.company_id,
            len(leads),
            requests,
            extra={**context, "lead_count": len(leads), "dataverse_requests": requests},
        )

        result: PushResult | None = None
        for written_lead in written:
            company_id = written_lead.lead.company_id
            item = items[company_id]
            if company_id == ref.company_id:
                if written_lead.error is not None:
                    result = self._failed(
                        ref,
                        token,
                        item.state,
                        classify(written_lead.error),
                        attempt,
                        context["dequeue_count"],
                        context,
                        written_lead.error,
                    )
                else:
                    assert written_lead.lead_id is not None
                    outcome = "created" if written_lead.created else "updated"
                    self._finish_synced(
                        company_id,
                        token,
                        attempt(outcome, d365_lead_id=written_lead.lead_id, dataverse_requests=requests),
                        item.state.queued_version,
                        written_lead.etag,
                        item.fingerprint,
                        item.warnings,
                    )
                    result = self._success(company_id, written_lead.lead_id, outcome, attempt, context)
            elif written_lead.error is not None:
                self._record_other_failure(item.state, token, classify(written_lead.error), outcomes)
            else:
                outcome = "created" if written_lead.created else "updated"
                self._finish_synced(
                    company_id,
                    token,
                    self._other_attempt(item.state, outcome, d365_lead_id=written_lead.lead_id),
                    item.state.queued_version,
                    written_lead.etag,
                    item.fingerprint,
                    item.warnings,
                )
                outcomes.append(outcome)
        assert result is not None
        return replace(result, batch_outcomes=tuple(outcomes))

    def _other_attempt(self, state: LeadState, outcome: str, **fields: Any) -> Attempt:
        return Attempt(outcome=outcome, duration_ms=0.0, correlation_id=state.lead.correlation_id, **fields)

    def _record_other_failure(self, state: LeadState, token: str, failure: Failure, outcomes: list[str]) -> None:
        """A lead written in another lead's batch failed: recorded as its own delivery would record
        it, except that a transient failure is never final here (its own message decides that)."""
        company_id = state.lead.company_id
        details = {
            "http_status": failure.http_status,
            "error_code": failure.error_code,
            "error": failure.reason,
            "service_request_id": failure.service_request_id,
        }
        if failure.retry_after is not None:
            self._store.release(company_id, token, self._other_attempt(state, "deferred", **details))
            outcomes.append("deferred")
            return
        outcome = "error" if failure.transient else "failed"
        self._store.finish_failure(
            company_id,
            token,
            self._other_attempt(state, outcome, failure_class=failure.failure_class, **details),
            version=state.queued_version,
            final=not failure.transient,
            unconfirmed_write=failure.unknown_outcome,
        )
        outcomes.append(outcome)
        (logger.warning if failure.transient else logger.error)(
            "%s company_id=%s status=%s code=%s request_id=%s: %s",
            "d365_push_error" if failure.transient else "d365_push_failed",
            company_id,
            failure.http_status,
            failure.error_code,
            failure.service_request_id,
            failure.reason,
            extra={
                "company_id": company_id,
                "correlation_id": state.lead.correlation_id,
                "outcome": outcome,
                "http_status": failure.http_status,
                "error_code": failure.error_code,
                "service_request_id": failure.service_request_id,
            },
        )

    def _finish_synced(
        self,
        company_id: int,
        token: str,
        attempt: Attempt,
        version: datetime,
        etag: str | None,
        fingerprint: str,
        warnings: list[str],
    ) -> None:
        try:
            recorded = self._store.finish_synced(
                company_id, token, attempt, version=version, etag=etag, fingerprint=fingerprint, warnings=warnings
            )
        except StoreUnavailable as exc:
            raise UnrecordedWrite(str(exc)) from exc
        if not recorded:
            # The write was sent within the lease; the lead's next holder re-decides from the store
            # (and meets a 412 if our write changed the record's version).
            logger.warning(
                "lease_lost company_id=%s: the lead's lease ended before its outcome was recorded",
                company_id,
                extra={"company_id": company_id},
            )

    def _map(self, lead: LeadMessage, context: dict[str, Any]) -> MappedLead:
        mapped = map_lead(lead.lead, self._schema.get(), choice_overrides=self._overrides)
        with self._reported_lock:
            new = [c for c in mapped.missing_columns if c not in self._reported_missing]
            self._reported_missing.update(new)
        for column in new:
            logger.warning(
                "d365_column_missing column=%s: the org has no such column; it is not sent",
                column,
                extra={"column": column},
            )
        for warning in mapped.warnings:
            logger.warning(
                "d365_mapping_warning company_id=%s column=%s: %s",
                lead.company_id,
                warning.column,
                warning.reason,
                extra={**context, "column": warning.column},
            )
        return mapped

    def _failed(
        self,
        ref: LeadRef,
        token: str,
        state: LeadState,
        failure: Failure,
        attempt: _AttemptFactory,
        dequeue_count: int,
        context: dict[str, Any],
        exc: Exception,
    ) -> PushResult:
        details = {
            "http_status": failure.http_status,
            "error_code": failure.error_code,
            "error": failure.reason,
            "service_request_id": failure.service_request_id,
        }
        log_extra = {
            **context,
            "http_status": failure.http_status,
            "error_code": failure.error_code,
            "service_request_id": failure.service_request_id,
        }
        if failure.retry_after is not None:
            delay = failure.retry_after
            self._store.release(ref.company_id, token, attempt("deferred", **details))
            logger.warning(
                "d365_rate_limit company_id=%s retry_after=%s: re-enqueued",
                ref.company_id,
                delay,
                extra={**log_extra, "retry_after": delay},
            )
            return PushResult(Action.DEFER, "deferred", failure.reason, delay_seconds=delay)
        if failure.stale_schema:
            self._schema.invalidate()

        final = not failure.transient or dequeue_count >= self._max_dequeue_count
        outcome = "failed" if final else "error"
        try:
            self._store.finish_failure(
                ref.company_id,
                token,
                attempt(outcome, failure_class=failure.failure_class, **details),
                version=state.queued_version,
                final=final,
                unconfirmed_write=failure.unknown_outcome,
            )
        except StoreUnavailable:
            if failure.transient:
                raise
            # Recorded or not, the message can never succeed: it still goes to the poison queue.
            logger.warning("d365_push_unrecorded company_id=%s", ref.company_id, extra=context)
        event = "d365_push_failed" if final else "d365_push_error"
        (logger.error if final else logger.warning)(
            "%s company_id=%s status=%s code=%s request_id=%s: %s",
            event,
            ref.company_id,
            failure.http_status,
            failure.error_code,
            failure.service_request_id,
            failure.reason,
            extra={**log_extra, "outcome": outcome},
            exc_info=exc if failure.reason.startswith("unexpected") else None,
        )
        if not failure.transient:
            return PushResult(Action.POISON, "failed", failure.reason)
        return PushResult(Action.RETRY, outcome, failure.reason)


@dataclass(frozen=True)
class _Item:
    """A claimed lead mapped for a write."""

    state: LeadState
    payload: dict[str, Any]
    fingerprint: str
    warnings: list[str]


class _AttemptFactory:
    """Builds the audit row of this delivery's attempt, timed from the start of the push."""

    def __init__(self, started: float, clock: Callable[[], float], correlation_id: str, dequeue_count: int) -> None:
        self._started = started
        self._clock = clock
        self._correlation_id = correlation_id
        self._dequeue_count = dequeue_count

    def elapsed_ms(self) -> float:
        return (self._clock() - self._started) * 1000

    def __call__(self, outcome: str, **fields: Any) -> Attempt:
        return Attempt(
            outcome=outcome,
            duration_ms=self.elapsed_ms(),
            correlation_id=self._correlation_id,
            dequeue_count=self._dequeue_count,
            **fields,
        )
