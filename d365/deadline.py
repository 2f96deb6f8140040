"""A time budget for the work in progress (one push): `with deadline(seconds): ...`.

The deadline lives in a context variable, so everything called inside the block in this thread
(and in tasks or threads started with a copy of the context) sees it without passing it along.
A nested block can shorten the budget, never extend it. The Dataverse client reads it: it sends
nothing once the deadline has passed, caps each request's timeout at the time left, and waits out
a 429 or a back-off only when the wait fits.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

Clock = Callable[[], float]

_DEADLINE: ContextVar[tuple[float, Clock] | None] = ContextVar("d365_deadline", default=None)


@contextmanager
def deadline(seconds: float, *, clock: Clock = time.monotonic) -> Iterator[None]:
    """Run the block with `seconds` to spare at most (the outer deadline, if sooner, still holds)."""
    at = clock() + seconds
    outer = _DEADLINE.get()
    if outer is not None:
        outer_at, outer_clock = outer  # expressed on this block's clock, in case the clocks differ
        at = min(at, clock() + (outer_at - outer_clock()))
    token = _DEADLINE.set((at, clock))
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def remaining() -> float | None:
    """Seconds left before the current deadline (0.0 once it has passed); None outside any deadline."""
    current = _DEADLINE.get()
    if current is None:
        return None
    at, clock = current
    return max(0.0, at - clock())


def expired() -> bool:
    """Whether a deadline is set and has passed."""
    left = remaining()
    return left is not None and left <= 0.0
