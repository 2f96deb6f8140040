"""The push use case: one lead message -> one Dataverse write (or none) -> its recorded outcome.

Safe to run twice for the same message: the lead's lock serialises workers, an older version is
skipped, an unchanged payload costs no request, and every write is an idempotent upsert.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from d365.errors import D365APIError, D365Error, D365RateLimitError
from d365.mapping import ChoiceOverrides, MappedLead, map_lead, payload_fingerprint
from d365.schema_cache import SchemaCache
from shared.lead_writer import LeadWriter
from shared.messages import LeadMessage
from shared.redact import redact
from shared.store import Attempt, LeadSession, LeadStore

logger = logging.getLogger(__name__)

# Dataverse's "Invalid property ... was found in entity": a column we believed the org had is gone.
_INVALID_PROPERTY_CODES = {"0x80048d19", "0x0"}


class Action(str, Enum):
    DONE = "done"          # acknowledge the message
    POISON = "poison"      # can never succeed: to the poison queue, then acknowledge
    DEFER = "defer"        # throttled: re-enqueue after `delay_seconds`, then acknowledge
    RETRY = "retry"        # transient: let the runtime deliver it again


@dataclass(frozen=True)
class PushResult:
    action: Action
    outcome: str
    reason: str | None = None
    delay_seconds: float = 0.0
    d365_lead_id: str | None = None


class LeadPusher:
    def __init__(
        self,
        *,
        store: LeadStore,
        writer: LeadWriter,
        schema: SchemaCache,
        choice_overrides: ChoiceOverrides | None,
        max_dequeue_count: int,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._store = store
        self._writer = writer
        self._schema = schema
        self._overrides = choice_overrides
        self._max_dequeue_count = max_dequeue_count
        self._clock = clock
        self._reported_missing: set[str] = set()
        self._reported_lock = threading.Lock()

    def push(self, message: LeadMessage, *, dequeue_count: int) -> PushResult:
        """Raises StoreUnavailable (transient) when PostgreSQL cannot record the attempt."""
        started = self._clock()
        context = {"company_id": message.company_id, "correlation_id": message.correlation_id,
                   "dequeue_count": dequeue_count}
        with self._store.lead_session(message.company_id) as session:
            state = session.claim(message)

            def attempt(outcome: str, **fields) -> Attempt:
                return Attempt(outcome=outcome, duration_ms=(self._clock() - started) * 1000,
                               correlation_id=message.correlation_id, dequeue_count=dequeue_count, **fields)

            if state.synced_version is not None and message.version < state.synced_version:
                session.mark_skipped(attempt("skipped", d365_lead_id=state.d365_lead_id))
                logger.info("d365_push_skipped company_id=%s: a newer version is already synced", message.company_id,
                            extra=context)
                return PushResult(Action.DONE, "skipped", d365_lead_id=state.d365_lead_id)

            mapped = self._map(message, context)
            fingerprint = payload_fingerprint(mapped.payload)
            warnings = [f"{w.column}: {w.reason}" for w in mapped.warnings]
            if state.d365_lead_id and fingerprint == state.synced_fingerprint:
                session.mark_synced(attempt("unchanged", d365_lead_id=state.d365_lead_id),
                                    version=message.version, fingerprint=fingerprint, warnings=warnings)
                logger.info("d365_push_unchanged company_id=%s", message.company_id, extra=context)
                return PushResult(Action.DONE, "unchanged", d365_lead_id=state.d365_lead_id)

            try:
                written = self._writer.write(message.company_id, mapped.payload, known_id=state.d365_lead_id)
            except D365Error as exc:
                return self._failed(session, exc, attempt, dequeue_count, context)

            outcome = "created" if written.created else "updated"
            session.mark_synced(attempt(outcome, d365_lead_id=written.lead_id, dataverse_requests=written.requests),
                                version=message.version, fingerprint=fingerprint, warnings=warnings)
            duration_ms = (self._clock() - started) * 1000
            logger.info("d365_push_success company_id=%s d365_lead_id=%s outcome=%s duration_ms=%.1f",
                        message.company_id, written.lead_id, outcome, duration_ms,
                        extra={**context, "d365_lead_id": written.lead_id, "duration_ms": duration_ms})
            return PushResult(Action.DONE, outcome, d365_lead_id=written.lead_id)

    def _map(self, message: LeadMessage, context: dict) -> MappedLead:
        mapped = map_lead(message.lead, self._schema.get(), choice_overrides=self._overrides)
        with self._reported_lock:
            new = [c for c in mapped.missing_columns if c not in self._reported_missing]
            self._reported_missing.update(new)
        for column in new:
            logger.warning("d365_column_missing column=%s: the org has no such column; it is not sent", column,
                           extra={"column": column})
        for warning in mapped.warnings:
            logger.warning("d365_mapping_warning company_id=%s column=%s: %s", message.company_id, warning.column,
                           warning.reason, extra={**context, "column": warning.column})
        return mapped

    def _failed(self, session: LeadSession, exc: D365Error, attempt, dequeue_count: int, context: dict) -> PushResult:
        reason = _describe(exc)
        details = {"http_status": exc.status, "error_code": exc.code or None, "error": reason}
        if isinstance(exc, D365RateLimitError):
            session.mark_deferred(attempt("deferred", **details))
            logger.warning("d365_rate_limit company_id=%s retry_after=%s: re-enqueued", context["company_id"],
                           exc.retry_after, extra={**context, "retry_after": exc.retry_after})
            return PushResult(Action.DEFER, "deferred", reason, delay_seconds=exc.retry_after)

        transient = exc.transient
        if isinstance(exc, D365APIError) and exc.status == 400 and exc.code in _INVALID_PROPERTY_CODES \
                and "Invalid property" in (exc.message or ""):
            # Our cached metadata is stale: read it again, and the next attempt leaves the column out.
            self._schema.invalidate()
            transient = True

        final = not transient or dequeue_count >= self._max_dequeue_count
        session.mark_failure(attempt("failed" if final else "error",
                                     failure_class="transient" if transient else "permanent", **details),
                             final=final)
        log = logger.error if final else logger.warning
        event = "d365_push_failed" if final else "d365_push_error"
        log("%s company_id=%s status=%s code=%s: %s", event, context["company_id"], exc.status, exc.code, reason,
            extra={**context, "http_status": exc.status, "error_code": exc.code})
        if not transient:
            return PushResult(Action.POISON, "failed", reason)
        return PushResult(Action.RETRY, "failed" if final else "error", reason)


def _describe(exc: D365Error) -> str:
    """The reason stored on the lead: what Dataverse said, in words a person can act on, with
    any contact address in it masked (the reason is served by the status API)."""
    status = f"HTTP {exc.status}" if exc.status else "no HTTP response"
    code = f" {exc.code}" if exc.code and exc.code not in ("", "0x0") else ""
    return redact(f"Dataverse {status}{code}: {exc.message}")[:2000]
