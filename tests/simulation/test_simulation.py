"""Thousands of schedules of the push protocol, each checked against its invariants
(tests/simulation/simulation.py says which). A failing seed is printed with its trail and replays
the same schedule:

    SIM_SEED=<n> .venv/bin/python -m pytest tests/simulation -k replay

`SIM_SEEDS` (default 2000) and `SIM_FIRST_SEED` (default 0) choose the seeds of the main test.
"""
from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

import shared.usecases.delivery
import shared.usecases.failures
import shared.usecases.push.batch
import shared.usecases.push.pause
import shared.usecases.push.pusher
import shared.usecases.push.recorder
import shared.writes.bulk_crm
import shared.writes.bulk_writer
import shared.writes.known_record
import shared.writes.ownership
import tests.simulation.simulation as simulation
from d365 import deadline
from shared.model.messages import LeadRef
from shared.usecases.failures import classify
from shared.usecases.push import Action, PushResult
from tests.simulation.outages import KINDS as OUTAGE_KINDS
from tests.simulation.simulation import SimulationFailed, run_seed

SEEDS = int(os.environ.get("SIM_SEEDS", "2000"))
FIRST_SEED = int(os.environ.get("SIM_FIRST_SEED", "0"))
SHOWN = 3


def test_many_schedules_keep_the_invariants() -> None:
    failed: list[SimulationFailed] = []
    seeds: list[int] = []
    outages: Counter[str] = Counter()  # by kind, the seeds in which an outage answered a call
    for seed in range(FIRST_SEED, FIRST_SEED + SEEDS):
        try:
            outages.update(run_seed(seed).outages.met.keys())
        except SimulationFailed as failure:
            seeds.append(seed)
            if len(failed) < SHOWN:
                failed.append(failure)
    if seeds:
        pytest.fail(f"{len(seeds)} of {SEEDS} schedules broke an invariant: seeds {seeds[:50]}\n\n"
                    + "\n\n".join(str(f) for f in failed), pytrace=False)
    if SEEDS >= 300:  # about one seed in thirty meets each kind
        assert set(outages) == set(OUTAGE_KINDS), f"outages that met no call in {SEEDS} seeds: " \
                                                  f"{set(OUTAGE_KINDS) - set(outages)}"


def test_replay() -> None:
    """Replays one schedule: SIM_SEED=<n> (seed 0 when unset), with its whole trail on failure."""
    try:
        run_seed(int(os.environ.get("SIM_SEED", "0")), trail_length=0)
    except SimulationFailed as failure:
        pytest.fail(str(failure), pytrace=False)


def test_a_seed_is_one_schedule() -> None:
    first, second = run_seed(7), run_seed(7)
    assert [(e.at, e.text) for e in first.events] == [(e.at, e.text) for e in second.events]
    assert first.scheduler.steps == second.scheduler.steps > 0
    assert len({tuple(e.text for e in run_seed(seed).events) for seed in range(5)}) == 5


@contextlib.contextmanager
def _deadline_as_long_as(seconds: float) -> Iterator[None]:
    """A mutant of the push: its deadline no longer ends before its lease."""
    original = simulation.simulated_time

    @contextlib.contextmanager
    def mutated(clock_of):  # type: ignore[no-untyped-def]
        with original(clock_of):
            shared.usecases.push.pusher.deadline = lambda _, **__: deadline.deadline(seconds, clock=clock_of())  # type: ignore[assignment]
            yield

    simulation.simulated_time = mutated  # type: ignore[assignment]
    try:
        yield
    finally:
        simulation.simulated_time = original  # type: ignore[assignment]


def test_the_simulation_catches_a_write_after_the_lease() -> None:
    # The invariants are only worth their runs if breaking the protocol breaks them.
    with _deadline_as_long_as(10_000):
        for seed in range(500):
            try:
                run_seed(seed)
            except SimulationFailed as failure:
                if "after its lease ended" in str(failure):
                    return
    pytest.fail("500 schedules of a push without a deadline and not one write after its lease was caught")


def _first_caught(violation: str, seeds: int = 300) -> int | None:
    """The first seed whose schedule breaks an invariant with `violation` in its words."""
    for seed in range(seeds):
        try:
            run_seed(seed)
        except SimulationFailed as failure:
            if violation in str(failure):
                return seed
    return None


def _fails_the_lead(exc: BaseException) -> None:
    return None


def _uses_up_deliveries(ref: LeadRef, exc: Exception, wire_text: str, dequeue_count: int) -> tuple[PushResult, str]:
    return PushResult(Action.RETRY, "error", classify(exc).reason), wire_text


def _never_lifts(*_: object, **__: object) -> None:
    return None


_LIFTS = [(shared.usecases.push.pause, "lift_pause"), (shared.usecases.push.recorder, "lift_pause"),
          (shared.usecases.push.batch, "lift_pause")]
MUTANTS: dict[str, tuple[list[tuple[object, str]], Callable[..., object], str]] = {
    # An org-level failure read as the lead's own: the lead fails at once, and goes to the poison queue.
    "an outage fails the lead": ([(shared.usecases.failures, "pause_reason")], _fails_the_lead,
                                 "did not refuse the lead itself"),
    # PostgreSQL unreachable at the claim retried as any failure: the outage uses up the deliveries.
    "a database outage uses up the deliveries": ([(shared.usecases.delivery, "_not_pushed")], _uses_up_deliveries,
                                                 "used up its deliveries"),
    # A probe that passes and leaves the pause open.
    "the pause is never lifted": (_LIFTS, _never_lifts, "still paused at the end"),
}


@pytest.mark.parametrize("mutant", MUTANTS)
def test_the_simulation_catches_an_outage_that_burns_leads(mutant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The outage invariants are only worth their runs if breaking the pause or the outage back-off breaks them.
    targets, replacement, violation = MUTANTS[mutant]
    for owner, name in targets:
        monkeypatch.setattr(owner, name, replacement)
    assert _first_caught(violation) is not None, f"300 schedules where {mutant}, and no '{violation}' was caught"


def _everything_sent(self: object, payload: dict, people: object) -> dict:
    return dict(payload)


PEOPLE_MUTANTS: dict[str, tuple[list[tuple[object, str]], object, str]] = {
    # A push that sends the columns people took over.
    "people's columns sent anyway": ([(shared.writes.ownership.ColumnOwnership, "sendable")], _everything_sent,
                                     "from the rep's"),
    # A push that does not know a lead can be closed.
    "closed leads written": ([(shared.writes.known_record, "CLOSED"), (shared.writes.bulk_crm, "CLOSED"),
                              (shared.writes.bulk_writer, "CLOSED")], frozenset(), "closed in the CRM"),
}


@pytest.mark.parametrize("mutant", PEOPLE_MUTANTS)
def test_the_simulation_catches_a_push_that_undoes_peoples_work(mutant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The sales rep's invariants are only worth their runs if a push that ignores people breaks them.
    targets, replacement, violation = PEOPLE_MUTANTS[mutant]
    for owner, name in targets:
        monkeypatch.setattr(owner, name, replacement)
    assert _first_caught(violation, seeds=500) is not None, f"500 schedules where {mutant}, and no '{violation}'"
