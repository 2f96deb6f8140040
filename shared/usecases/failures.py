"""What went wrong in a push, in the terms the push decides by: transient or permanent, a delay if
Dataverse asked for one, and what to record and tell a person.

Every exception a push can meet comes through `classify`: Dataverse's (token, metadata, write),
the store's, the mapping's, and anything unforeseen, which counts as transient so that it is
retried, and ends failed, not lost, once the deliveries run out.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from d365.errors import (
    D365ConnectionError,
    D365Error,
    D365RateLimitError,
    D365RecordChangedError,
    is_unknown_column,
)
from shared.model.errors import PermanentError, SyncError, TransientError
from shared.model.pause import PauseReason
from shared.observability.redact import redact
from shared.usecases.failure_scope import pause_reason

_MAX_REASON = 2000


@dataclass(frozen=True)
class Failure:
    transient: bool
    reason: str
    retry_after: float | None = None  # a 429: how long Dataverse asked us to wait
    stale_schema: bool = False  # Dataverse refused a column our metadata says exists
    unknown_outcome: bool = False  # a request was sent and its answer lost: a write may have landed
    http_status: int | None = None
    error_code: str | None = None
    service_request_id: str | None = None
    pause: PauseReason | None = None  # an org-level failure: pause the pipeline, the lead waits

    @property
    def failure_class(self) -> str:
        return "transient" if self.transient else "permanent"


def classify(exc: BaseException) -> Failure:
    if isinstance(exc, D365Error):
        failure = _dataverse(exc)
        reason = pause_reason(exc)
        return replace(failure, transient=True, pause=reason) if reason is not None else failure
    if isinstance(exc, TransientError):
        return Failure(True, _reason(str(exc)))
    if isinstance(exc, (PermanentError, SyncError)):
        return Failure(False, _reason(str(exc)))
    if isinstance(exc, (ValueError, TypeError, KeyError)):
        # The lead cannot be turned into a payload: no retry changes that.
        return Failure(False, _reason(f"cannot map the lead: {type(exc).__name__}: {exc}"))
    return Failure(True, _reason(f"unexpected {type(exc).__name__}: {exc}"))


def _dataverse(exc: D365Error) -> Failure:
    status = f"HTTP {exc.status}" if exc.status else "no HTTP response"
    code = f" {exc.code}" if exc.code and exc.code != "0x0" else ""
    failure = Failure(
        exc.transient,
        _reason(f"Dataverse {status}{code}: {exc.message}"),
        http_status=exc.status,
        error_code=exc.code or None,
        service_request_id=exc.request_id,
        unknown_outcome=isinstance(exc, D365ConnectionError) or exc.earlier_attempt_unanswered,
    )
    if isinstance(exc, D365RateLimitError):
        return replace(failure, transient=True, retry_after=exc.retry_after)
    if is_unknown_column(exc):
        # Our cached metadata is stale: read it again, and the next attempt leaves the column out.
        return replace(failure, transient=True, stale_schema=True)
    if isinstance(exc, D365RecordChangedError):
        # The record changed again under our write (a CRM user, or our own write whose answer was
        # lost): the next delivery reads its version afresh and decides again.
        return replace(failure, transient=True)
    return failure


def _reason(text: str) -> str:
    """In words a person can act on, with any contact address masked (the status API serves it)."""
    return redact(text)[:_MAX_REASON]
