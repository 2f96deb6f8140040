"""The rules every Dataverse call follows around its transport: bounded retries inside the call, a
shared throttle, the push's deadline and one token refresh.

Per attempt: the shared `ThrottleGate` may hold it back (a 429 anywhere holds back every request
until its Retry-After has passed); nothing is sent once the current `d365.deadline` has passed, and
the timeout is cut to what is left of it; a slot of the `ConcurrencyLimit` is held while it is sent.
Per answer:
- a 401 invalidates the token and is tried once more with a fresh one;
- a 429 is reported to the gate, and waited out inline when its Retry-After is short (at most
  `inline_retry_after`, at most twice that in all, `max_rate_limit_waits` times, and only when the
  wait fits the deadline), spread over 1 to 1.5 times the Retry-After so that requests refused
  together do not come back together; a longer one is raised for the caller to defer;
- 408/5xx and a connection without an answer are retried `max_retries` times after a jittered
  backoff (base x factor^n x 0.8..1.2) that fits the deadline;
- everything else is raised as its `d365.errors` type.

Retrying writes is safe because every write the client sends is idempotent or conditional: an
update or keyed upsert applied twice leaves the same record (so do UpsertMultiple and a $batch of
such PATCHes), a create (`If-None-Match: *`) retried after its first attempt committed answers 412
rather than making a second record, and an update at an ETag answers 412; the error then says
`earlier_attempt_unanswered`.

Time is read through the deadline only (`d365.deadline`, whose clock its caller chooses); sleeping
and jitter go through the injected `sleep` and `rng`.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace

from d365 import deadline
from d365.auth import TokenProvider
from d365.errors import (
    D365ConnectionError,
    D365DeadlineExceededError,
    D365Error,
    D365RateLimitError,
    error_from_response,
)
from d365.telemetry import record_dataverse_request
from d365.throttle import CONCURRENCY_LIMIT_CODE, ConcurrencyLimit, ThrottleGate
from d365.transport import Request, Response, Transport, TransportError

logger = logging.getLogger(__name__)

BACKOFF_BASE_SECONDS = 0.1
BACKOFF_FACTOR = 3.0
MAX_RATE_LIMIT_WAITS = 3


@dataclass(frozen=True)
class RetryRules:
    max_retries: int = 2
    inline_retry_after: float = 5.0
    backoff_base: float = BACKOFF_BASE_SECONDS
    backoff_factor: float = BACKOFF_FACTOR
    max_rate_limit_waits: int = MAX_RATE_LIMIT_WAITS


@dataclass
class CallState:
    """What one call has met so far, across its attempts."""

    kind: str
    attempts: int = 0
    retries: int = 0  # backoff retries (408/5xx, no answer)
    rate_limit_waits: int = 0
    waited: float = 0.0  # Retry-After seconds waited out inline
    reauthenticated: bool = False
    throttle_checked: bool = False  # the last wait already cleared the gate: no need to ask it again
    unanswered: bool = False  # an earlier attempt was sent and got no answer

    def mark_unanswered(self, error: D365Error) -> None:
        error.earlier_attempt_unanswered = self.unanswered
        self.unanswered = True


class RequestPolicy:
    def __init__(
        self,
        transport: Transport,
        tokens: TokenProvider,
        *,
        timeout: tuple[float, float],
        rules: RetryRules,
        sleep: Callable[[float], None],
        rng: random.Random,
        throttle: ThrottleGate | None,
        concurrency: ConcurrencyLimit,
    ) -> None:
        self._transport = transport
        self._tokens = tokens
        self._timeout = timeout
        self._rules = rules
        self._sleep = sleep
        self._rng = rng
        self._throttle = throttle
        self._concurrency = concurrency
        self._sent = 0
        self._sent_lock = threading.Lock()
        self._dop_hint: int | None = None

    @property
    def requests_sent(self) -> int:
        """Requests handed to the transport so far, retries included."""
        with self._sent_lock:
            return self._sent

    @property
    def dop_hint(self) -> int | None:
        """The latest `x-ms-dop-hint` Dataverse sent: its recommended number of parallel requests."""
        return self._dop_hint

    def send(self, request: Request) -> Response:
        """The answer to `request` (status < 400), after the retries these rules allow.
        Raises D365Error (D365DeadlineExceededError when nothing could be sent in time)."""
        call = CallState(request.kind)
        while True:
            try:
                response = self._attempt(request, call)
            except TransportError as exc:
                dropped: D365Error = D365ConnectionError(f"{call.kind}: {exc}")
                call.mark_unanswered(dropped)
                if self._may_retry(call, dropped):
                    continue
                _log_failure(call.kind, dropped)
                raise dropped from exc
            if response.status < 400:
                response.earlier_attempt_unanswered = call.unanswered
                return response
            error = error_from_response(response.status, response.headers, response.content)
            error.earlier_attempt_unanswered = call.unanswered
            if not self._retry_after(call, error):
                raise error

    def _attempt(self, request: Request, call: CallState) -> Response:
        if self._throttle is not None and not call.throttle_checked:
            self._throttle.before_request()
        call.throttle_checked = False
        if deadline.expired():
            raise D365DeadlineExceededError(f"{call.kind}: the deadline passed before the request was sent")
        headers = {**request.headers, "Authorization": f"Bearer {self._tokens.get_token()}"}
        attempt = replace(request, headers=headers, attempt=call.attempts)
        timeout = self._timeout_now(call.kind)
        if not self._concurrency.acquire(timeout=deadline.remaining()):
            raise D365DeadlineExceededError(f"{call.kind}: the deadline passed waiting for a free request slot")
        call.attempts += 1
        response = None
        try:
            with self._sent_lock:
                self._sent += 1
            response = self._transport.send(attempt, timeout)
        finally:
            # With a gate, the gate cuts (and shares the cut) when it hears of the 429.
            too_many = self._throttle is None and response is not None and _too_many_concurrent(response)
            self._concurrency.release(too_many=too_many)
            record_dataverse_request(call.kind, None if response is None else response.status)
        self._note_dop_hint(response)
        return response

    def _retry_after(self, call: CallState, error: D365Error) -> bool:
        """Whether to try again after this error answer (having waited, or refreshed the token)."""
        if error.status == 401 and not call.reauthenticated:
            self._tokens.invalidate()
            call.reauthenticated = True
            return True
        if isinstance(error, D365RateLimitError):
            return self._wait_out(call, error)
        retryable = error.transient and error.status != 401  # a fresh token was refused too
        if retryable and self._may_retry(call, error):
            return True
        _log_failure(call.kind, error)
        return False

    def _wait_out(self, call: CallState, error: D365RateLimitError) -> bool:
        """Report the 429, and wait it out when its Retry-After is short enough; False to raise it."""
        logger.warning(
            "d365_rate_limit kind=%s retry_after=%s service_request_id=%s",
            call.kind,
            error.retry_after,
            error.request_id,
            extra={"retry_after": error.retry_after, "kind": call.kind, "service_request_id": error.request_id},
        )
        if self._throttle is not None:
            if error.code == CONCURRENCY_LIMIT_CODE:
                self._throttle.on_concurrency_limited()
            else:
                self._throttle.on_rate_limited(error.retry_after)
        rules, retry_after = self._rules, error.retry_after
        if (
            retry_after > rules.inline_retry_after
            or call.waited + retry_after > 2 * rules.inline_retry_after
            or call.rate_limit_waits >= rules.max_rate_limit_waits
            or not _fits(retry_after)
        ):
            return False
        # Spread over the Retry-After: requests refused together must not come back together.
        wait = retry_after * self._rng.uniform(1.0, 1.5)
        self._sleep(wait if _fits(wait) else retry_after)
        call.waited += retry_after
        call.rate_limit_waits += 1
        call.throttle_checked = True
        return True

    def _may_retry(self, call: CallState, error: D365Error) -> bool:
        """Back off and say yes when another attempt is allowed and its wait fits the deadline."""
        rules = self._rules
        delay = rules.backoff_base * rules.backoff_factor**call.retries * self._rng.uniform(0.8, 1.2)
        if call.retries >= rules.max_retries or not _fits(delay):
            return False
        call.retries += 1
        logger.warning(
            "d365_retry kind=%s attempt=%s delay=%.2f service_request_id=%s error=%s",
            call.kind,
            call.retries,
            delay,
            error.request_id,
            error,
            extra={"kind": call.kind, "attempt": call.retries, "service_request_id": error.request_id},
        )
        self._sleep(delay)
        return True

    def _timeout_now(self, kind: str) -> tuple[float, float]:
        """The (connect, read) timeout, cut to the time the deadline leaves."""
        left = deadline.remaining()
        if left is None:
            return self._timeout
        if left <= 0:
            raise D365DeadlineExceededError(f"{kind}: the deadline passed before the request was sent")
        return (min(self._timeout[0], left), min(self._timeout[1], left))

    def _note_dop_hint(self, response: Response) -> None:
        hint = response.headers.get("x-ms-dop-hint")
        if hint and hint.isdigit() and int(hint) > 0:
            self._dop_hint = int(hint)


def _fits(wait: float) -> bool:
    """Whether waiting `wait` seconds still leaves time to send before the deadline."""
    left = deadline.remaining()
    return left is None or wait < left


def _too_many_concurrent(response: Response) -> bool:
    return response.status == 429 and CONCURRENCY_LIMIT_CODE.encode() in response.content


def _log_failure(kind: str, error: D365Error) -> None:
    # 404 and 412 are answers the write protocol expects (a stale id, a create that already landed).
    level = logging.INFO if error.status in (404, 412) else logging.WARNING
    logger.log(
        level,
        "d365_request_failed kind=%s status=%s code=%s service_request_id=%s: %s",
        kind,
        error.status,
        error.code,
        error.request_id,
        error,
        extra={
            "kind": kind,
            "http_status": error.status,
            "error_code": error.code,
            "service_request_id": error.request_id,
        },
    )
