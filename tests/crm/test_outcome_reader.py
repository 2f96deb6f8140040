"""The outcome reader brings back what became of each lead in the CRM, on the fakes: the real use
case and container over the fake store, queues and Dataverse (the emulator in process)."""
from __future__ import annotations

from collections import Counter

from shared.usecases.crm_outcomes import read_crm_outcomes
from tests.fakes.clock import FakeClock
from tests.fakes.dataverse import FakeDataverse
from tests.fakes.leads import accepted
from tests.fakes.queues import FakeLeadQueues
from tests.fakes.store import FakeLeadStore
from tests.fakes.wiring import build_pusher

COMPANIES = list(range(100, 112))


def _world() -> tuple[FakeClock, FakeLeadStore, FakeDataverse, FakeLeadQueues, dict[int, str]]:
    clock = FakeClock()
    store, queues, dataverse = FakeLeadStore(clock), FakeLeadQueues(clock), FakeDataverse(clock)
    pusher, _ = build_pusher(store=store, dataverse=dataverse, clock=clock)
    ids = {}
    for company in COMPANIES:
        store.record_queued([accepted(company, 0)])
        ids[company] = pusher.push(accepted(company, 0).ref(), dequeue_count=1).d365_lead_id or ""
        clock.advance(1)
    return clock, store, dataverse, queues, ids


def _read(dataverse: FakeDataverse, store: FakeLeadStore, queues: FakeLeadQueues, page_size: int = 5):
    before = Counter(dataverse.calls)
    result = read_crm_outcomes(dataverse=dataverse, store=store, queues=queues, page_size=page_size)
    return result, Counter(dataverse.calls) - before


def test_states_owners_and_merges_come_back_a_page_per_request() -> None:
    clock, store, dataverse, queues, ids = _world()
    first, second, third, fourth, fifth = COMPANIES[:5]
    clock.advance(60)
    dataverse.qualify(ids[first])
    dataverse.disqualify(ids[second], status=5)
    dataverse.merge(ids[third], into=ids[fourth])  # the master is another company's: left alone, named
    hand_made = dataverse.add_record({"subject": "a rep's own lead", "lastname": "Rep"})
    dataverse.merge(ids[fifth], into=hand_made)  # a master nobody holds: followed

    result, sent = _read(dataverse, store, queues)

    changed = len(COMPANIES) + 1  # every record changed since the first read, which reads all
    assert result.records >= changed and result.pages == -(-result.records // 5)
    assert sent["changed_leads"] == result.pages, "one request per page, nothing else"
    state = {c: store.lead_state(c) for c in COMPANIES}
    assert (state[first]["crm_state"], state[first]["crm_status_code"]) == ("qualified", 3)
    assert (state[second]["crm_state"], state[second]["crm_status_code"]) == ("disqualified", 5)
    assert (state[third]["crm_state"], state[third]["crm_merged_into"]) == ("merged", ids[fourth])
    assert state[fifth]["d365_lead_id"] == hand_made, "the lead follows a merge into a free master"
    assert all(state[c]["crm_owner_id"] for c in COMPANIES[5:])
    assert store.outcome_reader["lease_token"] is None


def test_the_next_read_starts_where_the_last_stopped_and_a_reopened_lead_is_due_again() -> None:
    clock, store, dataverse, queues, ids = _world()
    _read(dataverse, store, queues)
    clock.advance(60)
    dataverse.qualify(ids[COMPANIES[0]])
    assert _read(dataverse, store, queues)[0].records <= 2  # the boundary row again, and the change
    clock.advance(60)
    dataverse.reopen(ids[COMPANIES[0]])

    result, _ = _read(dataverse, store, queues)

    assert result.reopened == 1
    assert store.lead_state(COMPANIES[0])["crm_state"] == "open"
    assert store.rows[COMPANIES[0]].status == "queued" and len(queues.texts()) == 1


def test_one_instance_reads_at_a_time() -> None:
    _, store, dataverse, queues, _ = _world()
    assert store.lease_outcome_reader("00000000-0000-4000-8000-0000000000ff", lease_seconds=240)[0]

    result, sent = _read(dataverse, store, queues)

    assert not result.read and sum(sent.values()) == 0
