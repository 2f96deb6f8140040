"""A clock the test moves: one time source for the fake store, queues and Dataverse."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

# Far from the real time: code that mixes in `time.time()` (as `LeadPusher` does when it merges the
# shared throttle) then cannot make a test depend on the time of day.
START = datetime(2030, 1, 1, 0, 0, tzinfo=UTC)


class FakeClock:
    """Epoch seconds that move only when told. Callable, so it serves as `clock=` for
    `d365.deadline.deadline`, `SchemaCache`, `ThrottleGate` and `LeadPusher`."""

    def __init__(self, start: datetime = START) -> None:
        self._start = start
        self._elapsed = timedelta(0)

    def __call__(self) -> float:
        return self.now().timestamp()

    def now(self) -> datetime:
        return self._start + self._elapsed

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("time does not go back")
        self._elapsed += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        """For `sleep=` parameters: waiting is moving the clock."""
        self.advance(max(0.0, seconds))
