"""The push use case on real components: exactly one Dataverse lead per Hunter lead, whatever fails."""
from __future__ import annotations

import base64
import json
import threading

import pytest

from shared.usecases.delivery import RetryLater
from shared.writes.lead_writer import deterministic_lead_id
from shared.usecases.push import Action
from tests.app.helpers import attempts, lead, sync_rows


def writes(emulator) -> int:
    by_kind = emulator.stats()["by_kind"]
    return by_kind.get("PATCH lead", 0) + by_kind.get("POST leads", 0)


def data_requests(emulator) -> int:
    """Web API requests for records: what a lead costs in API quota, metadata and tokens aside."""
    by_kind = emulator.stats()["by_kind"]
    return sum(n for kind, n in by_kind.items() if kind not in ("metadata", "whoami"))


def records(emulator, company_id: int) -> list[dict]:
    return [r for r in emulator.leads() if r.get("hnt_companyid") == company_id]


def test_new_lead_is_created_with_its_deterministic_id_in_two_requests(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator)
    p.container.pusher  # metadata read outside the count
    p.container.schema.get()
    emulator.control("POST", "stats/reset")

    result = p.push(lead(1001))

    assert result.outcome == "created"
    assert result.d365_lead_id == deterministic_lead_id(1001)
    assert data_requests(emulator) == 2  # one lookup by email/website, one conditional create
    assert [r["leadid"] for r in records(emulator, 1001)] == [deterministic_lead_id(1001)]
    row = sync_rows(database_url, [1001])[1001]
    assert row["status"] == "synced" and str(row["d365_lead_id"]) == deterministic_lead_id(1001)


def test_identical_second_delivery_makes_no_dataverse_request(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator)
    p.push(lead(1002))
    before = emulator.stats()["requests"]

    result = p.push(lead(1002))

    assert result.outcome == "unchanged"
    assert emulator.stats()["requests"] == before
    assert [a["outcome"] for a in attempts(database_url, 1002)] == ["created", "unchanged"]


def test_changed_lead_costs_one_request(pipeline, dataverse):
    emulator = dataverse("mvp")
    p = pipeline(emulator)
    p.push(lead(1003))
    before = data_requests(emulator)

    result = p.push(lead(1003, readiness_score=55, updated_at="2026-11-27T10:00:00Z"))

    assert result.outcome == "updated"
    assert data_requests(emulator) - before == 1
    assert records(emulator, 1003)[0]["hnt_finalscore"] == 55


def test_older_version_is_skipped_and_newer_data_kept(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator)
    p.push(lead(1004, readiness_score=70, updated_at="2026-11-27T12:00:00Z"))

    result = p.push(lead(1004, readiness_score=10, updated_at="2026-11-27T09:00:00Z"))

    assert result.outcome == "skipped"
    assert records(emulator, 1004)[0]["hnt_finalscore"] == 70
    assert sync_rows(database_url, [1004])[1004]["status"] == "synced"


def test_record_deleted_in_the_crm_is_not_created_again_unless_replayed(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator)
    first = p.push(lead(1005))
    emulator.control("DELETE", f"leads/{first.d365_lead_id}")

    left = p.push(lead(1005, readiness_score=42, updated_at="2026-11-27T10:00:00Z"))

    assert left.outcome == "skipped" and records(emulator, 1005) == []
    assert p.container.store.lead_state(1005)["crm_state"] == "deleted"

    # an operator forces it through
    p.container.store.reset_for_replay(1005)
    forced = p.push(lead(1005, readiness_score=42, updated_at="2026-11-27T10:00:00Z"))

    assert forced.outcome == "created" and len(records(emulator, 1005)) == 1


def test_record_deleted_in_dataverse_is_recreated_when_configured(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator, D365_DELETED_LEADS="recreate")
    first = p.push(lead(1013))
    emulator.control("DELETE", f"leads/{first.d365_lead_id}")

    result = p.push(lead(1013, readiness_score=42, updated_at="2026-11-27T10:00:00Z"))

    assert result.outcome == "created"
    assert len(records(emulator, 1013)) == 1
    assert str(sync_rows(database_url, [1013])[1013]["d365_lead_id"]) == result.d365_lead_id


def test_existing_lead_found_by_email_is_updated_not_duplicated(pipeline, dataverse, identity):
    emulator = dataverse("mvp")
    p = pipeline(emulator)
    existing = "11111111-2222-3333-4444-555555555555"
    client = p.container.dataverse  # a salesperson's lead, written with the app's own client
    client.create_lead(existing, {"subject": "entered by a salesperson", "emailaddress1": "IT@company1006.example"})

    result = p.push(lead(1006))

    assert result.outcome == "updated" and result.d365_lead_id == existing
    assert len(emulator.leads()) == 1


def test_alternate_key_upsert_costs_one_request(pipeline, dataverse):
    emulator = dataverse("mvp", alternate_key="hnt_companyid")
    p = pipeline(emulator, D365_ALTERNATE_KEY="hnt_companyid")
    p.container.schema.get()
    emulator.control("POST", "stats/reset")

    result = p.push(lead(1007))

    assert data_requests(emulator) == 1
    assert [r["leadid"] for r in records(emulator, 1007)] == [result.d365_lead_id]


def test_create_whose_answer_was_lost_is_found_not_repeated(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator, D365_MATCH_COLUMNS="none")
    p.container.schema.get()
    # the create commits, then the connection drops; the client's own retry meets 412 and updates
    emulator.set_faults(script=[{"drop": "after_commit"}])

    result = p.push(lead(1008))

    assert result.action is Action.DONE
    assert len(records(emulator, 1008)) == 1
    assert sync_rows(database_url, [1008])[1008]["status"] == "synced"


def test_concurrent_deliveries_of_one_lead_create_one_record(pipeline, dataverse):
    emulator = dataverse("mvp")
    p = pipeline(emulator, D365_MATCH_COLUMNS="none")
    p.container.schema.get()
    emulator.set_faults(latency_ms=50)
    results = []

    def push(score: int) -> None:
        results.append(p.push(lead(1009, readiness_score=score)))

    threads = [threading.Thread(target=push, args=(s,)) for s in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(results) == 5
    assert len(records(emulator, 1009)) == 1
    assert sorted(r.outcome for r in results)[0] == "created"
    assert [r.outcome for r in results].count("created") == 1


def test_permanent_rejection_fails_once_poisons_and_replays(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator)
    emulator.control("POST", "rules", json={"column": "companyname", "equals": "company1010", "status": 400,
                                            "code": "0x80040265",
                                            "message": "Plug-in rejected the lead of it@company1010.example"})
    wire = p.accept(lead(1010))

    result = p.deliver(wire, dequeue_count=1)

    assert result.action is Action.POISON
    row = sync_rows(database_url, [1010])[1010]
    assert row["status"] == "failed" and row["attempts"] == 1
    assert "0x80040265" in row["last_error"] and "Plug-in rejected the lead" in row["last_error"]
    assert "it@company1010.example" not in row["last_error"]  # contact addresses are masked
    assert [(a["outcome"], a["failure_class"], a["http_status"], a["error_code"]) for a in attempts(database_url, 1010)] \
        == [("failed", "permanent", 400, "0x80040265")]
    assert p.poison_texts() == [wire]

    # when the cause is removed and the lead replayed
    emulator.control("DELETE", "rules")
    from shared.usecases.replay import replay_poisoned
    moved = replay_poisoned(queues=p.container.queues, store=p.container.store, company_id=1010)
    assert moved == 1 and p.poison_texts() == [] and p.main_texts() == [wire]
    assert sync_rows(database_url, [1010])[1010]["status"] == "queued"
    p.main.clear_messages()
    assert p.deliver(wire).outcome == "created"
    assert sync_rows(database_url, [1010])[1010]["status"] == "synced"


def test_long_throttle_defers_without_counting_an_attempt(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator, D365_INLINE_RETRY_AFTER_SECONDS="1")
    p.container.schema.get()
    emulator.set_faults(script=[{"status": 429, "retry_after": 30}])
    wire = p.accept(lead(1011))

    result = p.deliver(wire)

    assert result.action is Action.DEFER and result.delay_seconds == 30
    row = sync_rows(database_url, [1011])[1011]
    assert row["status"] == "queued" and row["attempts"] == 0
    assert p.main_texts() == []  # re-enqueued, invisible for 30 s
    assert p.main.get_queue_properties().approximate_message_count == 1
    assert records(emulator, 1011) == []


def test_transient_failure_records_error_then_failed_on_last_delivery(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator)
    p.container.schema.get()
    emulator.set_faults(server_error=1.0)
    wire = p.accept(lead(1012))

    first = p.deliver(wire, dequeue_count=1)
    assert isinstance(first, RetryLater)
    assert sync_rows(database_url, [1012])[1012]["status"] == "error"
    p.main.clear_messages()

    last = p.deliver(wire, dequeue_count=p.settings.queue_runtime.max_dequeue_count)
    assert isinstance(last, RetryLater)
    row = sync_rows(database_url, [1012])[1012]
    assert row["status"] == "failed" and "503" in row["last_error"]
    assert p.poison_texts() == []  # the runtime moves it, on its own, after this raise


@pytest.mark.parametrize("wire, company_id", [
    ("not base64 at all!", None),
    (base64.b64encode(b"{not json").decode(), None),
    (base64.b64encode(json.dumps({"hello": "world"}).encode()).decode(), None),
    (base64.b64encode(json.dumps({"v": 99, "lead": {"company_id": 1013}}).encode()).decode(), 1013),
])
def test_malformed_message_goes_to_poison_at_once(pipeline, dataverse, database_url, wire, company_id):
    emulator = dataverse("mvp")
    p = pipeline(emulator)

    result = p.deliver(wire)

    assert result.action is Action.POISON
    assert p.poison_texts() == [wire]
    assert p.main_texts() == []
    if company_id:
        audit = attempts(database_url, company_id)
        assert audit[-1]["outcome"] == "failed" and "malformed message" in audit[-1]["error"]
    assert emulator.leads() == []


def test_a_delivery_of_an_older_version_writes_the_newest_one_stored(pipeline, dataverse, database_url):
    emulator = dataverse("mvp")
    p = pipeline(emulator, D365_MATCH_COLUMNS="none")
    p.container.schema.get()
    newer = lead(1014, readiness_score=90, updated_at="2026-11-27T09:00:00Z")
    older = lead(1014, readiness_score=10, updated_at="2026-11-27T08:00:00Z")

    # the newer version's write commits, but its answer and both retries are lost: it waits to be retried
    emulator.set_faults(script=[{"drop": "after_commit"}, {"drop": "before"}, {"drop": "before"}])
    assert p.push(newer).action is Action.RETRY
    # the older version's message arrives meanwhile: it writes what is newest, never its own data
    assert p.push(older).outcome == "updated"
    assert sync_rows(database_url, [1014])[1014]["status"] == "synced"
    assert records(emulator, 1014)[0]["hnt_finalscore"] == 90

    # the newer version's retry then finds nothing left to do
    assert p.push(newer, dequeue_count=2).outcome == "unchanged"
    assert sync_rows(database_url, [1014])[1014]["status"] == "synced"
    assert records(emulator, 1014)[0]["hnt_finalscore"] == 90
