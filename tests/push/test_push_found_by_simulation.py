"""The schedules the simulation found breaking the push protocol's promises (docs/found-by-simulation.md), each
pinned as one short deterministic scenario over the fakes: delivery after delivery through
`handle_delivery`, as the Functions runtime runs them (fixed in 2ff8e79; kept as regression tests)."""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable

import pytest

from shared.model.messages import LeadRef
from shared.model.pause import PauseReason
from shared.usecases.delivery import Delivery, RetryLater, handle_delivery
from shared.usecases.push import PushResult
from shared.writes.lead_writer import deterministic_lead_id
from tests.fakes.faults import COMMIT_THEN_DROP, DROP_BEFORE, Fault, unavailable
from tests.fakes.queues import FakeLeadQueues
from tests.fakes.wiring import MAX_DEQUEUE_COUNT
from tests.push.test_push_decisions import C, World

REFUSED = Fault(400, "0x80040265", "Plug-in rejected the record")


class Runtime:
    """The queue trigger's runtime over the fake queues: one delivery of the front message."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.queues = FakeLeadQueues(world.clock)

    def send(self, ref: LeadRef) -> None:
        self.queues.send([ref.to_wire()])

    def deliver_all(self) -> list[PushResult | None]:
        """Deliver until the queue is empty; each delivery's result (None: RetryLater)."""
        results = []
        while self.queues.main.messages and len(results) < 2 * MAX_DEQUEUE_COUNT:
            results.append(self.deliver())
        return results

    def deliver(self) -> PushResult | None:
        """None when the delivery ended in RetryLater (the message then comes back)."""
        self.world.clock.advance(600)  # whatever back-off the last failure asked for has passed
        [message] = self.queues.receive(visibility_timeout=330)
        delivery = Delivery(message.text.encode(), message.id, message.pop_receipt, message.dequeue_count)
        try:
            result = handle_delivery(delivery, pusher=self.world.pusher, queues=self.queues,  # type: ignore[arg-type]
                                     store=self.world.store, backoff_base_seconds=10,  # type: ignore[arg-type]
                                     max_dequeue_count=MAX_DEQUEUE_COUNT)
        except RetryLater:
            if message.dequeue_count >= MAX_DEQUEUE_COUNT:
                self.queues.send_to_poison(message.text)
                self.queues.delete(message.id, message.pop_receipt)
            else:
                self.queues.update_visibility(message.id, message.pop_receipt, 10)
            return None
        self.queues.delete(message.id, message.pop_receipt)
        return result

    def poisoned(self) -> list[int]:
        return [LeadRef.from_wire(text.encode()).company_id for text in self.queues.poison_texts()]


def once(kind: str, fault: Fault | None, nth: int = 0,
         before: Callable[[], None] | None = None) -> Callable[[str], Fault | None]:
    """A step hook answering `fault` to the `nth` call of `kind` (after running `before`)."""
    calls = itertools.count()

    def step(called: str) -> Fault | None:
        if called != kind or next(calls) != nth:
            return None
        if before is not None:
            before()
        return fault

    return step


def test_bug_1_a_final_failure_whose_recording_lost_its_answer_still_reaches_the_poison_queue() -> None:
    # given: the write is refused for good, and the answer of recording that failure is lost
    world = World()
    runtime = Runtime(world)
    runtime.send(world.accept())
    world.dv.fail_next(REFUSED, kind="create_lead")
    world.store.step = once("store.finish_failure", COMMIT_THEN_DROP)

    # when: the runtime delivers the message until it is settled
    runtime.deliver_all()

    # then: the lead failed, and its message waits in the poison queue for a replay
    assert world.store.rows[C].status == "failed"
    assert runtime.poisoned() == [C], "failed, but nothing to replay: docs/found-by-simulation.md #1"


@pytest.mark.parametrize("cause", ["the retried update meets its own write", "a CRM user saves in between"])
def test_bug_2_a_412_on_the_update_after_reading_the_etag_again_is_not_final(cause: str) -> None:
    # given: the lead is synced, then edited in the CRM (so the stored ETag is stale)
    world = World(max_retries=1)
    lead_id = world.synced(0)
    world.dv.edit(lead_id, {"jobtitle": "CTO"})
    if cause == "a CRM user saves in between":
        world.dv.step = once("dataverse.update_lead", None, nth=1,
                             before=lambda: world.dv.edit(lead_id, {"jobtitle": "CEO"}))
    else:
        world.dv.step = once("dataverse.update_lead", COMMIT_THEN_DROP, nth=1)

    # when: a newer version is pushed (412 at the stored ETag, ETag read again, update again)
    result = world.push(world.accept(1, provider="Google"))

    # then: not failed for good: written, or left for the next delivery to re-decide
    assert (result.action.value, world.store.rows[C].status) != ("poison", "failed"), \
        f"{result.reason}: docs/found-by-simulation.md #2"
    if world.store.rows[C].status == "synced":
        assert world.record(lead_id)["hnt_provider"] == "Google"


def test_bug_3_a_write_that_landed_unanswered_is_not_left_failed() -> None:
    # given: Dataverse is unavailable for four deliveries, and on the last one the create lands but
    # its answer is lost (the client's retries spent)
    world = World()
    runtime = Runtime(world)
    runtime.send(world.accept())
    for _ in range(MAX_DEQUEUE_COUNT - 1):
        world.dv.fail_next(unavailable(503), kind="find_leads")
    world.dv.fail_next(COMMIT_THEN_DROP, kind="create_lead")

    # when: the runtime delivers the message until the queue is empty
    runtime.deliver_all()

    # then: Dataverse holds the newest version, so the store must not say it failed
    assert world.record(deterministic_lead_id(C))["hnt_infrasummary"] == "version 0"
    row = world.store.rows[C]
    assert row.status != "failed", f"failed ({row.last_error}) though its record holds the newest version: docs/found-by-simulation.md #3"


def test_bug_4_a_write_whose_success_could_not_be_recorded_is_not_left_failed() -> None:
    # given: Dataverse is unavailable for four deliveries; on the last one the create lands and is
    # answered, but PostgreSQL drops the connection when the push records it
    world = World()
    runtime = Runtime(world)
    runtime.send(world.accept())
    for _ in range(MAX_DEQUEUE_COUNT - 1):
        world.dv.fail_next(unavailable(503), kind="find_leads")
    world.store.step = once("store.finish_synced", DROP_BEFORE)

    # when: the runtime delivers the message until the queue is empty
    runtime.deliver_all()

    # then: Dataverse holds the newest version, so the store must not say it failed
    assert world.record(deterministic_lead_id(C))["hnt_infrasummary"] == "version 0"
    row = world.store.rows[C]
    assert row.status != "failed", f"failed ({row.last_error}) though its record holds the newest version: docs/found-by-simulation.md #4"


class WorkerDies(BaseException):
    """The worker process dies at a port call (as the simulation's `Crash`: nothing in the app catches it)."""


def _dies(kind: str) -> Callable[[str], Fault | None]:
    """A step hook under which the worker dies at the first call of `kind`."""
    calls = itertools.count()

    def step(called: str) -> Fault | None:
        if called == kind and next(calls) == 0:
            raise WorkerDies(kind)
        return None

    return step


PROBE_LOSES_ITS_PASS = {
    "the answer of recording the written lead is lost": (once("store.finish_synced", COMMIT_THEN_DROP), False),
    "closing the pause meets a dropped connection": (once("store.close_pause", DROP_BEFORE), False),
    "the worker dies before closing the pause": (_dies("store.close_pause"), False),
    "the lead is refused, and closing the pause meets a dropped connection": (
        once("store.close_pause", DROP_BEFORE), True),
}


@pytest.mark.parametrize("cause", PROBE_LOSES_ITS_PASS)
def test_bug_5_a_probe_that_passed_leaves_no_pause_open(cause: str) -> None:
    # given: the pipeline is paused (the application user's write privilege was removed, and is
    # back), one lead waits, and the probe's Dataverse answer reaches the store but not the pause
    step, refused = PROBE_LOSES_ITS_PASS[cause]
    world = World()
    runtime = Runtime(world)
    world.store.open_pause(PauseReason.PRIVILEGE, "missing prvWriteLead", probe_seconds=30)
    if refused:
        world.dv.add_rule("hnt_provider", "Rejected", status=REFUSED.status or 400, code=REFUSED.code)
    runtime.send(world.accept(provider="Rejected" if refused else "Google"))
    world.store.step = step

    # when: the runtime delivers the message until the queue is empty (a dead worker's message
    # comes back once its lease has passed)
    for _ in range(2 * MAX_DEQUEUE_COUNT):
        if not runtime.queues.main.messages:
            break
        with contextlib.suppress(WorkerDies):
            runtime.deliver()

    # then: the lead is settled, and the pause is lifted: no lead is left to probe it again
    assert world.store.rows[C].status == ("failed" if refused else "synced")
    assert world.store.paused is None, f"paused with nothing left to probe: docs/found-by-simulation.md #5 ({cause})"
