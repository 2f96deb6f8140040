"""The request policy alone (d365/policy.py): a scripted transport, a clock that moves only when the
policy sleeps, and a random source that always draws the same fraction of its range."""
from __future__ import annotations

import contextlib
import json
import logging
import random
from dataclasses import dataclass, field

import pytest

from d365.deadline import deadline
from d365.errors import (
    D365APIError,
    D365AuthenticationError,
    D365ConnectionError,
    D365DeadlineExceededError,
    D365Error,
    D365RateLimitError,
    D365RecordChangedError,
)
from d365.policy import RequestPolicy, RetryRules
from d365.throttle import CONCURRENCY_LIMIT_CODE, ConcurrencyLimit, ThrottleGate
from d365.transport import Headers, Request, Response, TransportError
from tests.d365.sleeping_clock import Clock

URL = "https://org.example.crm.dynamics.com/api/data/v9.2/leads?$filter=emailaddress1%20eq%20'it@c1.example'"
DROP = "drop"


def answer(status: int, *, retry_after: float | None = None, code: str = "0x0", dop_hint: str | None = None) -> Response:
    headers = [("x-ms-service-request-id", f"req-{status}")]
    if retry_after is not None:
        headers.append(("Retry-After", f"{retry_after:g}"))
    if dop_hint is not None:
        headers.append(("x-ms-dop-hint", dop_hint))
    if status < 400:
        return Response(status, Headers(headers), b'{"value": []}')
    body = json.dumps({"error": {"code": code, "message": f"refused with {status}"}}).encode()
    return Response(status, Headers(headers), body)


OK = answer(200)
THROTTLED_2 = answer(429, retry_after=2, code="0x80072322")
UNAVAILABLE = answer(503)


class ScriptedTransport:
    """Answers each attempt with the next scripted response, or drops it (`DROP`)."""

    def __init__(self, script: list[Response | str]) -> None:
        self.script = list(script)
        self.sent: list[tuple[Request, tuple[float, float]]] = []

    def send(self, request: Request, timeout: tuple[float, float]) -> Response:
        self.sent.append((request, timeout))
        step = self.script.pop(0)
        if step == DROP:
            raise TransportError("ConnectionError")
        assert isinstance(step, Response)
        return step

    def close(self) -> None:
        pass


class Tokens:
    def __init__(self) -> None:
        self.invalidations = 0

    def get_token(self) -> str:
        return f"token-{self.invalidations}"

    def invalidate(self) -> None:
        self.invalidations += 1


class Fraction(random.Random):
    """`uniform(a, b)` is always a + fraction x (b - a)."""

    def __init__(self, fraction: float) -> None:
        super().__init__(0)
        self.fraction = fraction

    def uniform(self, a: float, b: float) -> float:
        return a + self.fraction * (b - a)


@dataclass
class Harness:
    transport: ScriptedTransport
    tokens: Tokens = field(default_factory=Tokens)
    clock: Clock = field(default_factory=Clock)
    rules: RetryRules = field(default_factory=RetryRules)
    fraction: float = 0.5
    throttle: ThrottleGate | None = None
    concurrency: ConcurrencyLimit = field(default_factory=lambda: ConcurrencyLimit(52))

    def policy(self) -> RequestPolicy:
        return RequestPolicy(self.transport, self.tokens, timeout=(5.0, 30.0), rules=self.rules,
                             sleep=self.clock.sleep, rng=Fraction(self.fraction), throttle=self.throttle,
                             concurrency=self.throttle.concurrency if self.throttle else self.concurrency)

    def send(self) -> Response:
        return self.policy().send(Request("GET", URL, {"Accept": "application/json"}, None, "find_leads"))


# --- what each script of answers ends in ------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    script: list[Response | str]
    sleeps: list[float]            # the waits, in order
    raises: type[D365Error] | None = None
    rules: RetryRules = RetryRules()


ROWS = {
    "a short 429 is waited out, spread to 1-1.5x its Retry-After": Row([THROTTLED_2, OK], [2.5]),
    "a 429 longer than the inline wait is raised, not waited": Row(
        [answer(429, retry_after=30, code="0x80072322")], [], D365RateLimitError),
    "429s stop once the waits would pass twice the inline wait": Row(
        [answer(429, retry_after=4)] * 3, [5.0, 5.0], D365RateLimitError),
    "429s stop after MAX_RATE_LIMIT_WAITS waits": Row([answer(429, retry_after=1)] * 4, [1.25] * 3, D365RateLimitError),
    "a 503 is retried after a jittered backoff": Row([UNAVAILABLE, OK], [0.1]),
    "503s back off base x factor^n, then give up": Row([UNAVAILABLE] * 3, [0.1, 0.3], D365APIError),
    "408 is retried like a 5xx": Row([answer(408), OK], [0.1]),
    "no retries allowed: the first 503 is raised": Row([UNAVAILABLE], [], D365APIError, RetryRules(max_retries=0)),
    "a drop is retried after a backoff": Row([DROP, OK], [0.1]),
    "drops beyond the retries are a connection error": Row([DROP] * 3, [0.1, 0.3], D365ConnectionError),
    "a 400 is raised at once": Row([answer(400)], [], D365APIError),
    "a 412 is raised at once": Row([answer(412, code="0x80060882")], [], D365RecordChangedError),
    "a 401 is tried once more with a fresh token": Row([answer(401), OK], []),
    "a 401 after a fresh token is raised": Row([answer(401), answer(401)], [], D365AuthenticationError),
}


@pytest.mark.parametrize("name", list(ROWS))
def test_policy_row(name: str) -> None:
    row = ROWS[name]
    harness = Harness(ScriptedTransport(row.script), rules=row.rules)

    if row.raises is None:
        assert harness.send().status == 200
    else:
        with pytest.raises(row.raises):
            harness.send()

    assert harness.clock.slept == pytest.approx(row.sleeps)
    assert harness.transport.script == [], "every scripted answer was asked for"
    assert [request.attempt for request, _ in harness.transport.sent] == list(range(len(row.script)))


def test_the_backoff_jitter_spans_0_8_to_1_2() -> None:
    for fraction, expected in ((0.0, [0.08, 0.24]), (1.0, [0.12, 0.36])):
        harness = Harness(ScriptedTransport([UNAVAILABLE] * 3), fraction=fraction)
        with pytest.raises(D365APIError):
            harness.send()
        assert harness.clock.slept == pytest.approx(expected)


def test_the_429_spread_spans_1_to_1_5_of_the_retry_after() -> None:
    for fraction, expected in ((0.0, 2.0), (1.0, 3.0)):
        harness = Harness(ScriptedTransport([THROTTLED_2, OK]), fraction=fraction)
        harness.send()
        assert harness.clock.slept == pytest.approx([expected])


# --- what the errors say ---------------------------------------------------------------------------------


def test_a_drop_then_an_answer_says_an_earlier_attempt_went_unanswered() -> None:
    success = Harness(ScriptedTransport([DROP, OK])).send()
    assert success.earlier_attempt_unanswered

    with pytest.raises(D365RecordChangedError) as changed:
        Harness(ScriptedTransport([DROP, answer(412, code="0x80060882")])).send()
    assert changed.value.earlier_attempt_unanswered  # the 412 may be the first attempt's own write

    with pytest.raises(D365RecordChangedError) as plain:
        Harness(ScriptedTransport([UNAVAILABLE, answer(412, code="0x80060882")])).send()
    assert not plain.value.earlier_attempt_unanswered  # a 503 is an answer: nothing landed


def test_a_connection_error_names_the_call_and_the_error_type_never_the_url() -> None:
    with pytest.raises(D365ConnectionError) as dropped:
        Harness(ScriptedTransport([DROP] * 3)).send()
    assert str(dropped.value) == "find_leads: ConnectionError"
    assert dropped.value.status is None and dropped.value.transient
    assert dropped.value.earlier_attempt_unanswered
    assert isinstance(dropped.value.__cause__, TransportError)


def test_a_401_refreshes_the_token_once_and_sends_the_fresh_one() -> None:
    harness = Harness(ScriptedTransport([answer(401), answer(401)]))
    with pytest.raises(D365AuthenticationError) as refused:
        harness.send()
    assert refused.value.transient
    assert harness.tokens.invalidations == 1
    assert [r.headers["Authorization"] for r, _ in harness.transport.sent] == ["Bearer token-0", "Bearer token-1"]


# --- the deadline --------------------------------------------------------------------------------------


def test_nothing_is_sent_once_the_deadline_has_passed() -> None:
    harness = Harness(ScriptedTransport([OK]))
    with deadline(1, clock=harness.clock):
        harness.clock.sleep(1)
        with pytest.raises(D365DeadlineExceededError):
            harness.send()
    assert harness.transport.sent == []


@pytest.mark.parametrize(("seconds", "script", "sleeps", "raises"), [
    (1.5, [THROTTLED_2], [], D365RateLimitError),                   # a 2 s Retry-After does not fit
    (2.2, [THROTTLED_2, OK], [2.0], None),                          # 2 s fits, the spread 2.5 s does not
    (0.05, [UNAVAILABLE], [], D365APIError),                         # nor does a 0.1 s backoff
    (0.2, [UNAVAILABLE, UNAVAILABLE], [0.1], D365APIError),          # the first backoff fits, the second not
])
def test_waits_are_cut_to_the_deadline(seconds: float, script: list[Response | str], sleeps: list[float],
                                       raises: type[D365Error] | None) -> None:
    harness = Harness(ScriptedTransport(script))
    with deadline(seconds, clock=harness.clock):
        if raises is None:
            harness.send()
        else:
            with pytest.raises(raises):
                harness.send()
    assert harness.clock.slept == pytest.approx(sleeps)
    assert harness.transport.script == []


def test_the_timeout_is_cut_to_what_the_deadline_leaves() -> None:
    harness = Harness(ScriptedTransport([OK, OK]))
    harness.send()
    with deadline(2, clock=harness.clock):
        harness.send()
    assert [timeout for _, timeout in harness.transport.sent] == [(5.0, 30.0), (2.0, 2.0)]


# --- the throttle gate, the concurrency limit, the hint --------------------------------------------------


def test_a_429_is_reported_to_the_gate_and_its_inline_wait_skips_the_gate() -> None:
    clock = Clock()
    started = clock.now
    published: list[float] = []
    refreshed: list[float] = []

    def refresh() -> tuple[float | None, float | None]:
        refreshed.append(clock.now)
        return None, None

    gate = ThrottleGate(inline_wait_seconds=5, publish=published.append, refresh=refresh, clock=clock,
                        sleep=clock.sleep)
    harness = Harness(ScriptedTransport([THROTTLED_2, OK]), clock=clock, throttle=gate)

    harness.send()

    assert published == [started + 2]  # throttled until the 429's time + its Retry-After
    assert clock.slept == [2.5]  # the policy's spread wait only
    assert refreshed == [started]  # the retry after the wait did not ask the gate again


def test_a_concurrency_429_halves_the_limit_without_a_gate() -> None:
    limit = ConcurrencyLimit(8)
    harness = Harness(ScriptedTransport([answer(429, retry_after=1, code=CONCURRENCY_LIMIT_CODE), OK]),
                      concurrency=limit)
    harness.send()
    assert limit.limit == 4


def test_the_dop_hint_is_kept() -> None:
    harness = Harness(ScriptedTransport([answer(200, dop_hint="6"), answer(200)]))
    policy = harness.policy()
    assert policy.dop_hint is None
    for _ in range(2):
        policy.send(Request("GET", URL, {}, None, "whoami"))
    assert policy.dop_hint == 6 and policy.requests_sent == 2


# --- the log -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("script", "events"), [
    ([THROTTLED_2, OK], [("d365_rate_limit", logging.WARNING)]),
    ([UNAVAILABLE, OK], [("d365_retry", logging.WARNING)]),
    ([UNAVAILABLE] * 3, [("d365_retry", logging.WARNING)] * 2 + [("d365_request_failed", logging.WARNING)]),
    ([answer(404, code="0x80040217")], [("d365_request_failed", logging.INFO)]),
    ([answer(429, retry_after=30)], [("d365_rate_limit", logging.WARNING)]),
])
def test_log_events(script: list[Response | str], events: list[tuple[str, int]],
                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="d365.policy")
    with pytest.raises(D365Error) if script[-1] is not OK else contextlib.nullcontext():
        Harness(ScriptedTransport(script)).send()
    logged = [(r.getMessage().split()[0], r.levelno) for r in caplog.records if r.name == "d365.policy"]
    assert logged == events
    assert not any("it@c1.example" in r.getMessage() for r in caplog.records)
