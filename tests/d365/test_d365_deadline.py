"""The push deadline as a context variable."""

from __future__ import annotations

import contextvars
import threading

from d365.deadline import deadline, expired, remaining


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_no_deadline_outside_a_block() -> None:
    assert remaining() is None and not expired()


def test_remaining_counts_down_and_stops_at_zero() -> None:
    clock = Clock()
    with deadline(10, clock=clock):
        assert remaining() == 10
        clock.now += 4
        assert remaining() == 6 and not expired()
        clock.now += 7
        assert remaining() == 0 and expired()
    assert remaining() is None


def test_a_nested_block_shortens_but_never_extends() -> None:
    clock = Clock()
    with deadline(10, clock=clock):
        with deadline(30, clock=clock):
            assert remaining() == 10
        with deadline(3, clock=clock):
            assert remaining() == 3
        assert remaining() == 10


def test_the_deadline_belongs_to_its_context() -> None:
    seen: dict[str, float | None] = {}
    with deadline(10):
        context = contextvars.copy_context()
        bare = threading.Thread(target=lambda: seen.__setitem__("bare", remaining()))
        bare.start()
        bare.join()
        copied = threading.Thread(target=lambda: seen.__setitem__("copied", context.run(remaining)))
        copied.start()
        copied.join()
    assert seen["bare"] is None  # another thread's push is not bound by this one's deadline
    assert seen["copied"] is not None and 0 < seen["copied"] <= 10
