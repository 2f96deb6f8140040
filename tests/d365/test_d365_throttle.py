"""ThrottleGate alone: waits, refusals, merges and publishing."""

from __future__ import annotations

import pytest

from d365.deadline import deadline
from d365.errors import D365RateLimitError
from d365.throttle import ThrottleGate
from tests.d365.sleeping_clock import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


class NoJitter:
    """Resume at the first moment allowed (the spread is tested on its own)."""

    def uniform(self, low: float, high: float) -> float:
        return low


def _gate(clock: Clock, published: list[float] | None = None, inline: float = 5) -> ThrottleGate:
    return ThrottleGate(
        inline_wait_seconds=inline,
        publish=None if published is None else published.append,
        clock=clock,
        sleep=clock.sleep,
        rng=NoJitter(),  # type: ignore[arg-type]
    )


def test_not_throttled_passes_at_once(clock: Clock) -> None:
    gate = _gate(clock)
    gate.before_request()
    assert clock.slept == [] and gate.remaining() == 0


def test_a_rate_limit_sets_until_and_publishes_it(clock: Clock) -> None:
    published: list[float] = []
    gate = _gate(clock, published)
    gate.on_rate_limited(30)
    gate.on_rate_limited(10)  # a shorter one never shortens the wait
    assert gate.throttled_until == clock.now + 30
    assert published == [clock.now + 30, clock.now + 30]


def test_a_short_remainder_is_slept_a_long_one_refused(clock: Clock) -> None:
    gate = _gate(clock)
    gate.on_rate_limited(4)
    gate.before_request()
    assert clock.slept == [4.0]

    gate.on_rate_limited(20)
    with pytest.raises(D365RateLimitError) as raised:
        gate.before_request()
    assert raised.value.retry_after == 20 and raised.value.transient
    assert clock.slept == [4.0]


def test_merge_takes_the_later_moment(clock: Clock) -> None:
    gate = _gate(clock)
    gate.merge(clock.now + 50)
    gate.merge(clock.now + 10)
    gate.merge(None)
    assert gate.throttled_until == clock.now + 50
    gate.merge(clock.now - 100)  # a stale value from the database changes nothing
    assert gate.throttled_until == clock.now + 50


def test_a_wait_that_does_not_fit_the_deadline_is_refused(clock: Clock) -> None:
    gate = _gate(clock)
    gate.on_rate_limited(3)
    with deadline(2), pytest.raises(D365RateLimitError) as raised:
        gate.before_request()
    assert raised.value.retry_after == 3 and clock.slept == []
    with deadline(10):
        gate.before_request()
    assert clock.slept == [3.0]


def test_a_failing_publish_does_not_hide_the_rate_limit(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    def publish(until: float) -> None:
        raise ConnectionError("database down")

    gate = ThrottleGate(inline_wait_seconds=5, publish=publish, clock=clock, sleep=clock.sleep)
    gate.on_rate_limited(30)
    assert gate.throttled_until == clock.now + 30
    assert "d365_throttle_publish_failed" in caplog.text
