"""Runs jobs (a delivery, an intake, a sweep) on threads, one at a time, switching only where a
job calls a port of the fakes: the fakes call `Scheduler.step(kind)` first, which hands control
back to the scheduler's thread and waits for the job's next turn. The scheduler decides whose turn
it is with a seeded random, so a seed is one schedule, replayed exactly.

When a job resumes, `decide(job, kind)` may move the clock, crash the job (raise `Crash`, a
BaseException the app does not catch, so the process's work stops right there) or answer the port
call with a fault.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.faults import Fault

STUCK_SECONDS = 30.0


class JobStuck(RuntimeError):
    """A job blocked outside the fakes: the schedule cannot go on."""


class Crash(BaseException):
    """The worker process dies at this step."""


@dataclass(eq=False)
class Job:
    name: str
    run: Callable[[], None]
    worker: Any = None
    tokens: dict[int, str] = field(default_factory=dict)   # the leases this job was given, by company
    crashed: bool = False
    error: BaseException | None = None
    finished: bool = False
    waiting_at: str | None = None   # the port call it will make when resumed


_local = threading.local()


def _signal() -> threading.Lock:
    """A hand-over between two threads: `release` to give the turn, `acquire` to wait for it. A bare
    lock, held from the start, is several times cheaper than a Semaphore (no Condition)."""
    lock = threading.Lock()
    lock.acquire()
    return lock


class _Carrier:
    """A thread that runs one job after another, each only when given its turn. Carriers are
    kept for the next schedule: starting threads would cost more than running the schedule."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler
        self.go = _signal()
        self.job: Job | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True, name="sim-carrier")
        self.thread.start()

    def _loop(self) -> None:
        _local.carrier = self
        while True:
            self.go.acquire()
            job = self.job
            if job is None:  # told to stop
                return
            try:
                job.run()
            except Crash:
                job.crashed = True
            except BaseException as exc:  # noqa: BLE001 - reported by the simulation as a violation
                job.error = exc
            job.finished = True
            self.job = None
            self.scheduler._back.release()


_IDLE: list[_Carrier] = []


class Scheduler:
    def __init__(self) -> None:
        self._back = _signal()
        self._carriers: dict[int, _Carrier] = {}
        self.running: list[Job] = []
        self.decide: Callable[[Job, str], Fault | None] = lambda job, kind: None
        # Whether the job goes on without giving the scheduler a chance to switch (decided on the job's
        # thread, while it alone runs, so a seeded choice stays deterministic).
        self.keep_turn: Callable[[Job, str], bool] = lambda job, kind: False
        self.steps = 0

    def current(self) -> Job | None:
        """The job of the calling thread; None on the scheduler's own thread."""
        carrier = getattr(_local, "carrier", None)
        return carrier.job if carrier is not None and carrier.scheduler is self else None

    def start(self, job: Job) -> None:
        """Queue the job; it runs up to its first port call on its first turn."""
        carrier = _IDLE.pop() if _IDLE else _Carrier(self)
        carrier.scheduler, carrier.job = self, job
        job.waiting_at = "start"
        self.running.append(job)
        self._carriers[id(job)] = carrier

    def resume(self, job: Job) -> None:
        """Give `job` its turn and wait until it reaches its next port call or ends."""
        carrier = self._carriers[id(job)]
        carrier.go.release()
        if not self._back.acquire(timeout=STUCK_SECONDS):
            raise JobStuck(f"{job.name} neither reached a port call nor ended within {STUCK_SECONDS:.0f} s "
                           f"(blocked on a lock of its own? last port call: {job.waiting_at})")
        if job.finished:
            self.running.remove(job)
            del self._carriers[id(job)]
            _IDLE.append(carrier)

    def step(self, kind: str) -> Fault | None:
        """Called by the fakes before each port call."""
        carrier = getattr(_local, "carrier", None)
        if carrier is None or carrier.job is None or carrier.scheduler is not self:
            return None  # the scheduler's own thread: setting up or checking
        job = carrier.job
        self.steps += 1
        if self.keep_turn(job, kind):  # no switch here: saves two thread hand-overs
            return self.decide(job, kind)
        job.waiting_at = kind
        self._back.release()
        carrier.go.acquire()
        job.waiting_at = None
        return self.decide(job, kind)

    def abort(self) -> None:
        """Crash every job still running (after a failure), so its thread is free again."""
        self.decide = _crash
        while self.running:
            self.resume(self.running[0])



def _crash(job: Job, kind: str) -> Fault | None:
    raise Crash()
