"""The schedules the simulation found breaking the push protocol's promises (docs/found-by-simulation.md), each
pinned as one short deterministic scenario over the fakes: delivery after delivery through
`handle_delivery`, as the Functions runtime runs them (#1 to #5), or one push at a
time in a CRM where a person works the leads (#6 to #13, issue 16); kept as regression tests."""
from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable

import pytest

from shared.model.messages import LeadRef
from shared.model.pause import PauseReason
from shared.usecases.crm_outcomes import read_crm_outcomes
from shared.usecases.delivery import Delivery, RetryLater, handle_delivery
from shared.usecases.push import PushResult
from shared.writes.lead_writer import deterministic_lead_id
from tests.fakes.faults import COMMIT_THEN_DROP, DROP_BEFORE, Fault, unavailable
from tests.fakes.queues import FakeLeadQueues
from tests.fakes.wiring import MAX_DEQUEUE_COUNT, build_pusher
from tests.push.test_push_decisions import C, OTHER, World

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


# --- a CRM where people work (issue 16): found by the simulation's sales rep ---------------------------


def bulk_world(*, bulk_supported: bool) -> World:
    """A world whose pusher writes a backlog two leads a request (UpsertMultiple, or a $batch)."""
    world = World()
    world.dv.bulk_supported = bulk_supported
    world.pusher, world.schema = build_pusher(store=world.store, dataverse=world.dv, clock=world.clock,
                                              throttle=world.throttle, bulk_size=2)
    world.schema.get()
    return world


def hand_typed(world: World, lead_id: str | None = None) -> str:
    return world.dv.add_record({"subject": "the rep's own lead", "lastname": "Master", "companyname": "kept"},
                               lead_id=lead_id)


@pytest.mark.parametrize("person", ["edits the company name", "qualifies the lead"])
def test_bug_6_a_record_written_by_upsert_multiple_is_read_before_the_next_single_write(person: str) -> None:
    # given: the lead was created in an UpsertMultiple request (which answers no row version), then a rep works it
    world = bulk_world(bulk_supported=True)
    world.accept(0, company=OTHER)
    lead_id = world.push(world.accept(0)).d365_lead_id or ""
    assert world.store.rows[C].d365_etag is None
    if person == "edits the company name":
        world.dv.edit(lead_id, {"companyname": "typed by a rep"})
    else:
        world.dv.qualify(lead_id)

    # when: Hunter's next version is written alone
    world.push(world.accept(1, provider="Google"))

    # then: not with `If-Match: *` over the rep's work
    record = world.record(lead_id)
    if person == "edits the company name":
        assert (record["companyname"], record["hnt_provider"]) == ("typed by a rep", "Google"), \
            "a rep's value overwritten: docs/found-by-simulation.md #6"
    else:
        assert record["hnt_provider"] == "M365", "a qualified lead written: docs/found-by-simulation.md #6"
        assert world.store.rows[C].crm_state == "qualified"


def test_bug_7_a_lead_merged_into_a_qualified_record_leaves_it_alone() -> None:
    # given: the lead's record is merged into a record the rep had qualified
    world = World()
    lead_id = world.synced(0)
    master = hand_typed(world)
    world.dv.qualify(master)
    world.dv.merge(lead_id, into=master)

    # when: Hunter's next version is pushed
    result = world.push(world.accept(1, provider="Google"))

    # then: the lead follows the master, and leaves it alone as any qualified lead
    assert world.record(master).get("hnt_provider") is None, "a closed master written: docs/found-by-simulation.md #7"
    assert result.outcome == "skipped"
    assert (world.store.rows[C].d365_lead_id, world.store.rows[C].crm_state) == (master, "qualified")


@pytest.mark.parametrize("how", ["its create's answer was lost", "the lookup finds it"])
def test_bug_8_a_record_the_store_never_wrote_is_read_before_it_is_written(how: str) -> None:
    # given: a record the store knows nothing of, which a rep qualified: our own create whose answer
    # was lost (the rep also changed its address, so the lookup misses it), or one typed by hand
    world = World()
    if how == "its create's answer was lost":
        world.dv.fail_next(COMMIT_THEN_DROP, kind="create_lead")
        assert world.push(world.accept(0)).outcome == "error"
        lead_id = deterministic_lead_id(C)
        world.dv.edit(lead_id, {"emailaddress1": "typed@by-a-rep.example"})
    else:
        lead_id = world.hand_made()
    world.dv.qualify(lead_id)

    # when: Hunter's next version is pushed
    result = world.push(world.accept(1, provider="Google"))

    # then: the record is the lead's, and left alone as qualified
    assert world.record(lead_id).get("hnt_provider") != "Google", \
        "a qualified lead written: docs/found-by-simulation.md #8"
    assert result.outcome == "skipped"
    assert (world.store.rows[C].d365_lead_id, world.store.rows[C].crm_state) == (lead_id, "qualified")


def test_bug_9_a_lead_that_followed_its_merge_shows_the_masters_state() -> None:
    # given: the lead's record is merged into a record nobody holds, which the rep qualified; the
    # master comes first in the reader's page (modifiedon, then leadid)
    world = World()
    lead_id = world.synced(0)
    master = hand_typed(world, "00000000-0000-4000-8000-000000000001")
    world.dv.qualify(master)
    world.dv.merge(lead_id, into=master)

    # when: the outcome reader runs
    read_crm_outcomes(dataverse=world.dv, store=world.store, queues=FakeLeadQueues(world.clock))

    # then: the lead follows the master, and shows the master's state, not its merged record's
    state = world.store.lead_state(C)
    assert state is not None
    assert (state["d365_lead_id"], state["crm_state"], state["crm_status_code"]) == (master, "qualified", 3), \
        "docs/found-by-simulation.md #9"


def test_bug_9_a_chain_of_merges_is_followed_to_its_end() -> None:
    # given: the lead's record is merged into another company's record, itself merged into a record
    # nobody holds; the other company's record comes first in the reader's page
    world = World()
    ours, theirs = world.synced(0), world.push(world.accept(0, company=OTHER)).d365_lead_id or ""
    master = hand_typed(world, "ffffffff-ffff-4fff-bfff-ffffffffffff")
    world.dv.merge(ours, into=theirs)
    world.dv.merge(theirs, into=master)

    # when: the outcome reader runs
    read_crm_outcomes(dataverse=world.dv, store=world.store, queues=FakeLeadQueues(world.clock))

    # then: the other company follows to the master; ours is left alone, merged (two companies never share one record)
    other, state = world.store.lead_state(OTHER), world.store.lead_state(C)
    assert other is not None and state is not None
    assert (other["d365_lead_id"], other["crm_state"]) == (master, "open")
    assert state["crm_state"] == "merged", f"{state['crm_state']} on {state['d365_lead_id']}: docs/found-by-simulation.md #9"


def test_bug_10_a_batch_write_that_meets_a_change_does_not_write_over_it() -> None:
    # given: two synced leads written in $batch requests; a rep edits ours between the batch's read and its write
    world = bulk_world(bulk_supported=False)
    world.accept(0, company=OTHER)
    lead_id = world.push(world.accept(0)).d365_lead_id or ""
    world.accept(1, company=OTHER, provider="Google")
    world.dv.step = once("dataverse.batch", None,
                         before=lambda: world.dv.edit(lead_id, {"companyname": "typed by a rep"}))

    # when: Hunter's next versions are pushed together
    world.push(world.accept(1, provider="Google"))

    # then: the 412 is not answered by writing again at a re-read version
    record = world.record(lead_id)
    assert record["companyname"] == "typed by a rep", "a rep's value overwritten: docs/found-by-simulation.md #10"
    assert record["hnt_provider"] == "Google"


def test_bug_10_a_bulk_write_leaves_our_own_qualified_record_alone() -> None:
    # given: an UpsertMultiple of two new leads lands but its answer is lost; a rep qualifies ours
    world = bulk_world(bulk_supported=True)
    world.accept(0, company=OTHER)
    world.dv.fail_next(COMMIT_THEN_DROP, kind="upsert_multiple")
    assert world.push(world.accept(0)).outcome == "error"
    lead_id = deterministic_lead_id(C)
    world.dv.qualify(lead_id)

    # when: Hunter's next version is pushed with the other lead, in bulk
    result = world.push(world.accept(1, provider="Google"))

    # then: our record is found, and left alone as qualified
    assert world.record(lead_id)["hnt_provider"] == "M365", "a qualified lead written: docs/found-by-simulation.md #10"
    assert result.outcome == "skipped" and world.store.rows[C].crm_state == "qualified"


def test_bug_11_a_lead_left_alone_without_a_request_keeps_its_status_code() -> None:
    # given: a rep disqualified the lead (Cannot Contact), and a push saw it
    world = World()
    world.dv.disqualify(world.synced(0), status=5)
    assert world.push(world.accept(1, provider="Google")).outcome == "skipped"

    # when: the next version is left alone from the state the store knows, without a request
    calls = sum(world.dv.calls.values())
    world.push(world.accept(2, provider="Microsoft"))
    assert sum(world.dv.calls.values()) == calls

    # then: the status still says why
    state = world.store.lead_state(C)
    assert state is not None
    assert (state["crm_state"], state["crm_status_code"]) == ("disqualified", 5), "docs/found-by-simulation.md #11"


def test_bug_12_our_own_write_whose_answer_was_lost_does_not_make_a_column_the_peoples() -> None:
    # given: Hunter renames the company, and the answer of that update is lost
    world = World()
    lead_id = world.synced(0)
    renamed = world.accept(1, canonical_name="renamed once")
    world.dv.fail_next(COMMIT_THEN_DROP, kind="update_lead")
    assert world.push(renamed).outcome == "error"
    assert world.push(renamed).outcome == "updated"  # 412 at the stored version, read, written

    # when: Hunter renames it again
    world.push(world.accept(2, canonical_name="renamed twice"))

    # then: nobody but the app changed the name, so it takes Hunter's newest
    assert world.record(lead_id)["companyname"] == "renamed twice", "docs/found-by-simulation.md #12"
    assert world.store.rows[C].people_columns == []


def test_bug_13_a_lead_whose_merge_master_was_deleted_is_left_alone_as_deleted() -> None:
    # given: the lead's record was merged into a record nobody holds, which a rep then deleted
    world = World()
    lead_id = world.synced(0)
    master = hand_typed(world)
    world.dv.merge(lead_id, into=master)
    world.dv.delete(master)

    # when: Hunter's next version is pushed
    result = world.push(world.accept(1, provider="Google"))

    # then: a deleted lead, left alone, not a failure
    assert (result.action.value, result.outcome) == ("done", "skipped"), \
        f"{result.outcome} ({result.reason}): docs/found-by-simulation.md #13"
    assert world.store.rows[C].crm_state == "deleted" and master not in world.dv.records
