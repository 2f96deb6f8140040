"""How a failed push is recorded: one rule for the lead a delivery is about and for the other
leads of its bulk request."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from shared.model.errors import StoreUnavailable
from shared.model.outcomes import Outcome
from shared.model.ports import SyncStore
from shared.model.sync import Attempt
from shared.usecases.failures import Failure
from shared.usecases.push.pause import lift_pause

logger = logging.getLogger(__name__)

AttemptBuilder = Callable[..., Attempt]


class FailureRecorder:
    def __init__(self, store: SyncStore, *, probe_seconds: float) -> None:
        self._store = store
        self._probe_seconds = probe_seconds

    def record(
        self,
        company_id: int,
        token: str,
        version: datetime,
        failure: Failure,
        attempt: AttemptBuilder,
        *,
        final: bool,
        context: dict[str, Any],
        exc: BaseException | None = None,
    ) -> Outcome:
        """Record the failure at `version` and let the lead go; returns its outcome: PAUSED for an
        org-level failure (the pipeline pauses), DEFERRED when Dataverse asked to wait, else FAILED
        (`final`) or ERROR. Raises StoreUnavailable when a transient failure could not be recorded
        (the delivery must then be retried)."""
        details = {"error": failure.reason, **_codes(failure)}
        log_extra = {**context, **_codes(failure)}
        if failure.pause is not None:
            self._store.release(company_id, token, attempt(Outcome.PAUSED, **details))
            self.pause(failure, log_extra)
            return Outcome.PAUSED
        if failure.retry_after is not None:
            self._store.release(company_id, token, attempt(Outcome.DEFERRED, **details))
            logger.warning(
                "d365_rate_limit company_id=%s retry_after=%s: re-enqueued",
                company_id,
                failure.retry_after,
                extra={**log_extra, "retry_after": failure.retry_after},
            )
            return Outcome.DEFERRED
        outcome = Outcome.FAILED if final else Outcome.ERROR
        if not failure.transient and failure.http_status is not None:
            lift_pause(self._store, context, written=False)  # Dataverse refused the lead itself: a probe passed
        try:
            self._store.finish_failure(
                company_id,
                token,
                attempt(outcome, failure_class=failure.failure_class, **details),
                version=version,
                final=final,
                unconfirmed_write=failure.unknown_outcome,
            )
        except StoreUnavailable:
            if failure.transient:
                raise
            # Recorded or not, the message can never succeed: it still goes to the poison queue.
            logger.warning("d365_push_unrecorded company_id=%s", company_id, extra=context)
        (logger.error if final else logger.warning)(
            "%s company_id=%s status=%s code=%s request_id=%s: %s",
            "d365_push_failed" if final else "d365_push_error",
            company_id,
            failure.http_status,
            failure.error_code,
            failure.service_request_id,
            failure.reason,
            extra={**log_extra, "outcome": outcome},
            exc_info=exc if exc is not None and failure.reason.startswith("unexpected") else None,
        )
        return outcome

    def pause(self, failure: Failure, log_extra: dict[str, Any]) -> None:
        """Open the pipeline's pause (or keep it open), the next probe `probe_seconds` away."""
        assert failure.pause is not None
        opened = self._store.open_pause(failure.pause, failure.reason, probe_seconds=self._probe_seconds)
        (logger.error if opened else logger.info)(
            "pipeline_paused reason=%s: %s",
            failure.pause,
            failure.reason,
            extra={**log_extra, "pause_reason": failure.pause},
        )


def _codes(failure: Failure) -> dict[str, Any]:
    return {
        "http_status": failure.http_status,
        "error_code": failure.error_code,
        "service_request_id": failure.service_request_id,
    }
