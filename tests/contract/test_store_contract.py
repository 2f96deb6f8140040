"""The lead store's contract: the same tests against `FakeLeadStore` and `LeadStore` on PostgreSQL."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.model.messages import LeadMessage
from shared.model.errors import StoreRefused
from shared.model.crm import ColumnMemory, CrmOutcome, CrmState
from shared.model.sync import Attempt, ClaimStatus, Synced
from tests.contract.conftest import StoreHarness, new_company_id

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
LEASE = 60.0
ID_A = "3f2b1c4d-0000-4000-8000-00000000000a"


def message(company_id: int, minutes: int = 0, **fields) -> LeadMessage:
    version = T0 + timedelta(minutes=minutes)
    lead = {"company_id": company_id, "domain": f"c{company_id}.example", "updated_at": version.isoformat(),
            "infrastructure_summary": f"v{minutes}", **fields}
    return LeadMessage(lead=lead, correlation_id=f"corr-{company_id}-{minutes}", received_at=version)


def ok(outcome: str = "created", **fields) -> Attempt:
    return Attempt(outcome=outcome, duration_ms=1.0, **fields)


def failed(outcome: str = "error", reason: str = "Dataverse HTTP 503: down", **fields) -> Attempt:
    return Attempt(outcome=outcome, duration_ms=1.0, error=reason,
                   failure_class="transient" if outcome == "error" else "permanent", **fields)


def queued(side: StoreHarness, minutes: int = 0) -> int:
    company = new_company_id()
    side.store.record_queued([message(company, minutes)])
    return company


def claim(side: StoreHarness, company: int):
    result = side.store.claim(company, lease_seconds=LEASE)
    assert result.status is ClaimStatus.CLAIMED
    return result


def status(side: StoreHarness, company: int) -> str:
    return side.store.lead_state(company)["status"]


def test_a_recorded_lead_is_queued_and_claimed_with_its_newest_version(store_side: StoreHarness) -> None:
    company = queued(store_side, 0)
    store_side.store.record_queued([message(company, 5)])
    store_side.store.record_queued([message(company, 2)])  # older: changes nothing

    state = store_side.store.lead_state(company)
    assert (state["status"], state["attempts"], state["d365_lead_id"]) == ("queued", 0, None)
    assert state["last_error"] is None
    assert state["correlation_id"] == f"corr-{company}-5"
    assert set(state) == {"company_id", "status", "d365_lead_id", "attempts", "last_error", "warnings",
                          "correlation_id", "created_at", "updated_at", "last_attempt_at", "last_success_at",
                          "crm_state", "crm_status_code", "crm_owner_id", "crm_merged_into", "crm_seen_at"}

    claimed = claim(store_side, company)
    assert claimed.token and claimed.state is not None
    assert claimed.state.queued_version == T0 + timedelta(minutes=5)
    assert claimed.state.lead.lead["infrastructure_summary"] == "v5"
    assert claimed.state.d365_lead_id is None
    assert claimed.state.synced_version is None and claimed.state.failed_version is None
    assert status(store_side, company) == "processing"


def test_an_unknown_lead_cannot_be_claimed(store_side: StoreHarness) -> None:
    assert store_side.store.claim(new_company_id(), lease_seconds=LEASE).status is ClaimStatus.UNKNOWN
    assert store_side.store.lead_state(new_company_id()) is None


def test_a_leased_lead_is_refused_with_the_time_its_lease_still_runs(store_side: StoreHarness) -> None:
    company = queued(store_side)
    claim(store_side, company)

    second = store_side.store.claim(company, lease_seconds=LEASE)

    assert second.status is ClaimStatus.LEASED and second.token is None and second.state is None
    assert 0 < second.leased_for_seconds <= LEASE


def test_an_expired_lease_is_taken_over_and_the_old_token_changes_nothing(store_side: StoreHarness) -> None:
    company = queued(store_side)
    first = claim(store_side, company)
    store_side.expire_lease(company)

    second = claim(store_side, company)

    assert second.token != first.token
    assert not store_side.store.finish_synced(company, first.token, ok(d365_lead_id=ID_A), version=T0, etag="W/\"1\"",
                                              fingerprint="f", warnings=[])
    assert not store_side.store.release(company, first.token, ok("skipped"))
    assert not store_side.store.finish_failure(company, first.token, failed(), version=T0, final=False)
    assert not store_side.store.reserve_lead_id(company, first.token, ID_A)
    assert store_side.attempts(company) == []
    assert status(store_side, company) == "processing"
    assert store_side.store.release(company, second.token, ok("deferred"))


def test_an_expired_lease_whose_lead_nobody_took_still_lets_its_holder_finish(store_side: StoreHarness) -> None:
    # The guard is the token, not the time: the write was sent within the lease (the push's deadline).
    company = queued(store_side)
    held = claim(store_side, company)
    store_side.expire_lease(company)

    assert store_side.store.finish_synced(company, held.token, ok(d365_lead_id=ID_A), version=T0, etag="W/\"7\"",
                                          fingerprint="f", warnings=[])
    assert status(store_side, company) == "synced"


def test_finish_synced_records_the_write_and_lets_go(store_side: StoreHarness) -> None:
    company = queued(store_side)
    held = claim(store_side, company)
    lead_id = f"{ID_A[:-12]}{company % 10**12:012d}"

    assert store_side.store.finish_synced(company, held.token, ok("created", d365_lead_id=lead_id, dataverse_requests=2,
                                                                  correlation_id="c1", dequeue_count=1),
                                          version=T0, etag='W/"1000001"', fingerprint="fp1",
                                          warnings=["hnt_segment: unknown label"])

    state = store_side.store.lead_state(company)
    assert (state["status"], state["d365_lead_id"], state["attempts"], state["last_error"]) == \
        ("synced", lead_id, 1, None)
    assert state["warnings"] == ["hnt_segment: unknown label"]
    assert state["last_success_at"] is not None
    assert store_side.column(company, "lease_token") is None
    assert store_side.column(company, "d365_etag") == 'W/"1000001"'
    assert store_side.column(company, "synced_version") == T0
    assert store_side.attempts(company) == [{
        "outcome": "created", "failure_class": None, "http_status": None, "error_code": None, "error": None,
        "d365_lead_id": lead_id, "dataverse_requests": 2, "correlation_id": "c1", "dequeue_count": 1,
        "service_request_id": None}]
    again = claim(store_side, company)
    assert (again.state.d365_lead_id, again.state.d365_etag, again.state.synced_fingerprint) == \
        (lead_id, 'W/"1000001"', "fp1")
    assert again.state.synced_version == T0 and again.state.attempts == 1


def test_a_newer_version_accepted_during_the_lease_leaves_the_lead_queued_for_it(store_side: StoreHarness) -> None:
    company = queued(store_side, 0)
    held = claim(store_side, company)

    store_side.store.record_queued([message(company, 10)])
    assert status(store_side, company) == "processing"  # the holder re-decides when it lets go
    store_side.store.finish_synced(company, held.token, ok(d365_lead_id=ID_A.replace("a", "b")), version=T0,
                                   etag="e", fingerprint="f", warnings=[])

    assert status(store_side, company) == "queued"
    assert store_side.column(company, "synced_version") == T0
    nxt = claim(store_side, company)
    assert nxt.state.queued_version == T0 + timedelta(minutes=10)
    assert nxt.state.lead.lead["infrastructure_summary"] == "v10"
    assert nxt.state.attempts == 1


def test_release_goes_back_to_what_the_versions_say(store_side: StoreHarness) -> None:
    fresh = queued(store_side)
    held = claim(store_side, fresh)
    assert store_side.store.release(fresh, held.token, ok("deferred", error="Dataverse HTTP 429: slow down"))
    assert status(store_side, fresh) == "queued"
    assert store_side.store.lead_state(fresh)["last_error"] == "Dataverse HTTP 429: slow down"

    synced = queued(store_side)
    held = claim(store_side, synced)
    store_side.store.finish_synced(synced, held.token, ok(d365_lead_id=f"{ID_A[:-12]}{synced % 10**12:012d}"),
                                   version=T0, etag="e", fingerprint="f", warnings=[])
    again = claim(store_side, synced)
    assert store_side.store.release(synced, again.token, ok("unchanged"))
    assert status(store_side, synced) == "synced"
    assert store_side.store.lead_state(synced)["attempts"] == 1  # a release is no attempt at the lead


def test_a_final_failure_stays_shown_until_a_newer_version_comes(store_side: StoreHarness) -> None:
    company = queued(store_side, 0)
    held = claim(store_side, company)
    assert store_side.store.finish_failure(company, held.token, failed("failed", "Dataverse HTTP 400: bad"),
                                           version=T0, final=True)
    assert status(store_side, company) == "failed"
    assert store_side.column(company, "failed_version") == T0

    older = claim(store_side, company)  # an older or repeated delivery
    assert older.state.failed_version == T0
    store_side.store.release(company, older.token, ok("skipped"))
    state = store_side.store.lead_state(company)
    assert (state["status"], state["last_error"], state["attempts"]) == ("failed", "Dataverse HTTP 400: bad", 1)

    store_side.store.record_queued([message(company, 1)])
    assert status(store_side, company) == "queued"
    newer = claim(store_side, company)
    assert newer.state.failed_version == T0 < newer.state.queued_version
    assert newer.state.attempts == 0


def test_a_transient_failure_is_error_with_its_reason_and_a_newer_version_wins(store_side: StoreHarness) -> None:
    company = queued(store_side, 0)
    held = claim(store_side, company)
    assert store_side.store.finish_failure(company, held.token, failed("error", "Dataverse HTTP 503: down",
                                                                       http_status=503, service_request_id="r-1"),
                                           version=T0, final=False)
    state = store_side.store.lead_state(company)
    assert (state["status"], state["last_error"], state["attempts"]) == ("error", "Dataverse HTTP 503: down", 1)
    assert store_side.column(company, "failed_version") is None
    assert [(a["outcome"], a["failure_class"], a["http_status"], a["service_request_id"])
            for a in store_side.attempts(company)] == [("error", "transient", 503, "r-1")]

    held = claim(store_side, company)
    store_side.store.record_queued([message(company, 3)])
    store_side.store.finish_failure(company, held.token, failed("failed", "Dataverse HTTP 400: bad"), version=T0,
                                    final=True)
    assert status(store_side, company) == "queued"  # the newer version is still to be tried
    assert store_side.column(company, "failed_version") == T0


def test_a_failure_without_a_reason_or_an_attempt_without_its_class_is_refused(store_side: StoreHarness) -> None:
    company = queued(store_side)
    held = claim(store_side, company)
    with pytest.raises(StoreRefused):
        store_side.store.finish_failure(company, held.token, Attempt(outcome="error", duration_ms=1.0,
                                                                     failure_class="transient"),
                                        version=T0, final=False)
    with pytest.raises(StoreRefused):
        store_side.store.release(company, held.token, Attempt(outcome="error", duration_ms=1.0, error="x"))
    assert status(store_side, company) == "processing"
    assert store_side.attempts(company) == []


def test_a_dataverse_id_belongs_to_one_company(store_side: StoreHarness) -> None:
    first, second = queued(store_side), queued(store_side)
    lead_id = f"{ID_A[:-12]}{first % 10**12:012d}"
    held_first = claim(store_side, first)
    held_second = claim(store_side, second)

    assert store_side.store.reserve_lead_id(first, held_first.token, lead_id.upper())
    assert store_side.store.lead_state(first)["d365_lead_id"] == lead_id
    assert not store_side.store.reserve_lead_id(second, held_second.token, lead_id)
    assert not store_side.store.reserve_lead_id(second, "00000000-0000-4000-8000-000000000000", lead_id)
    with pytest.raises(StoreRefused):
        store_side.store.finish_synced(second, held_second.token, ok(d365_lead_id=lead_id), version=T0, etag="e",
                                       fingerprint="f", warnings=[])
    assert status(store_side, second) == "processing"
    assert store_side.store.lead_state(second)["d365_lead_id"] is None


def test_a_reserved_id_forgets_the_old_etag(store_side: StoreHarness) -> None:
    company = queued(store_side)
    held = claim(store_side, company)
    store_side.store.finish_synced(company, held.token, ok(d365_lead_id=f"{ID_A[:-12]}{company % 10**12:012d}"),
                                   version=T0, etag='W/"5"', fingerprint="f", warnings=[])
    store_side.store.record_queued([message(company, 1)])
    held = claim(store_side, company)
    other = f"{ID_A[:-12]}{(company + 1) % 10**12:012d}"

    assert store_side.store.reserve_lead_id(company, held.token, other)

    assert store_side.column(company, "d365_etag") is None
    assert store_side.column(company, "lease_token") == held.token  # still held


def test_throttling_is_shared_and_the_later_moment_holds(store_side: StoreHarness) -> None:
    company = queued(store_side)
    now = store_side.now()
    store_side.store.publish_throttle(now + timedelta(seconds=60))
    store_side.store.publish_throttle(now + timedelta(seconds=20))

    result = store_side.store.claim(company, lease_seconds=LEASE)

    assert 40 < result.throttled_for_seconds <= 60
    assert store_side.store.claim(new_company_id(), lease_seconds=LEASE).throttled_for_seconds > 40


def test_no_throttling_reads_as_zero(store_side: StoreHarness) -> None:
    store_side.store.publish_throttle(store_side.now() - timedelta(seconds=5))
    assert store_side.store.claim(queued(store_side), lease_seconds=LEASE).throttled_for_seconds == 0.0


def test_a_rejected_message_fails_its_lead_with_the_reason(store_side: StoreHarness) -> None:
    company = queued(store_side)
    store_side.store.record_rejected_message(company, "malformed message: bad version", dequeue_count=1)

    state = store_side.store.lead_state(company)
    assert (state["status"], state["last_error"], state["attempts"]) == ("failed", "malformed message: bad version", 1)
    assert [(a["outcome"], a["failure_class"], a["dequeue_count"]) for a in store_side.attempts(company)] == \
        [("failed", "permanent", 1)]

    held_company = queued(store_side)
    claim(store_side, held_company)
    store_side.store.record_rejected_message(held_company, "malformed message: x", dequeue_count=2)
    assert status(store_side, held_company) == "processing"  # its holder decides

    unknown = new_company_id()
    store_side.store.record_rejected_message(unknown, "malformed message: y", dequeue_count=1)
    assert store_side.store.lead_state(unknown) is None
    assert [a["outcome"] for a in store_side.attempts(unknown)] == ["failed"]


def test_replay_starts_a_failed_lead_over(store_side: StoreHarness) -> None:
    company = queued(store_side)
    held = claim(store_side, company)
    store_side.store.finish_failure(company, held.token, failed("failed", "Dataverse HTTP 403: no privilege"),
                                    version=T0, final=True)

    store_side.store.reset_for_replay(company)

    state = store_side.store.lead_state(company)
    assert (state["status"], state["attempts"]) == ("queued", 0)
    again = claim(store_side, company)
    assert again.state.failed_version is None
    store_side.store.release(company, again.token, ok("deferred"))
    assert status(store_side, company) == "queued"


def test_the_sweep_takes_stale_unheld_unfinished_leads_once(store_side: StoreHarness) -> None:
    age, old = 3600, 7200
    waiting = queued(store_side)                       # queued, stale
    stuck = queued(store_side)                         # processing, lease expired, stale
    claim(store_side, stuck)
    store_side.expire_lease(stuck)
    errored = queued(store_side)                       # error, stale
    held = claim(store_side, errored)
    store_side.store.finish_failure(errored, held.token, failed(), version=T0, final=False)
    leased = queued(store_side)                        # processing, still leased
    claim(store_side, leased)
    done = queued(store_side)                          # synced
    held = claim(store_side, done)
    store_side.store.finish_synced(done, held.token, ok(d365_lead_id=f"{ID_A[:-12]}{done % 10**12:012d}"),
                                   version=T0, etag="e", fingerprint="f", warnings=[])
    young = queued(store_side)                         # queued, recent
    ours = [waiting, stuck, errored, leased, done, young]
    for company in ours[:-1]:
        store_side.age(company, old)

    swept = [ref for ref in store_side.store.claim_stuck(age_seconds=age) if ref.company_id in ours]

    assert sorted(ref.company_id for ref in swept) == sorted([waiting, stuck, errored])
    ref = next(r for r in swept if r.company_id == waiting)
    assert (ref.version, ref.correlation_id) == (T0, f"corr-{waiting}-0")
    assert status(store_side, stuck) == "queued"
    assert status(store_side, errored) == "error"
    assert not [r for r in store_side.store.claim_stuck(age_seconds=age) if r.company_id in ours]


def test_the_sweep_leaves_leads_whose_message_may_still_be_waiting(store_side: StoreHarness) -> None:
    company = queued(store_side)
    store_side.age(company, 7200)
    sent = store_side.now() - timedelta(seconds=7200)

    behind = store_side.store.claim_stuck(age_seconds=3600, oldest_waiting=sent - timedelta(seconds=60))
    assert company not in [r.company_id for r in behind]
    swept = store_side.store.claim_stuck(age_seconds=3600, oldest_waiting=sent + timedelta(seconds=60))
    assert company in [r.company_id for r in swept]


def test_due_leads_are_leased_for_a_bulk_write_under_one_token(store_side: StoreHarness) -> None:
    own = queued(store_side)
    held = claim(store_side, own)
    due = [queued(store_side) for _ in range(2)]
    for company in due:
        store_side.age(company, -10 * 365 * 24 * 3600)  # the newest: first in line, ahead of the session's rows

    states = store_side.store.claim_due(own, held.token, limit=2, lease_seconds=LEASE)

    assert sorted(s.lead.company_id for s in states) == sorted(due)
    for company in due:
        assert status(store_side, company) == "processing"
        assert store_side.column(company, "lease_token") == held.token
        assert store_side.store.release(company, held.token, ok("deferred"))
    assert store_side.store.claim_due(own, held.token, limit=0, lease_seconds=LEASE) == []


def test_a_webhook_delivery_id_is_claimed_once_then_answered(store_side: StoreHarness) -> None:
    delivery_id = f"delivery-{new_company_id()}"
    pending = {"body_sha256": "abc", "pending": True}

    assert store_side.store.claim_delivery(delivery_id, pending) is None
    assert store_side.store.claim_delivery(delivery_id, {"body_sha256": "other", "pending": True}) == pending
    store_side.store.remember_delivery(delivery_id, {"correlation_id": "c", "body_sha256": "abc"})
    assert store_side.store.claim_delivery(delivery_id, pending) == {"correlation_id": "c", "body_sha256": "abc"}

    store_side.store.remember_delivery(f"never-claimed-{delivery_id}", {"x": 1})
    assert store_side.store.claim_delivery(f"never-claimed-{delivery_id}", pending) is None


def test_the_shared_throttle_is_read_back_by_scope(store_side: StoreHarness) -> None:
    until = store_side.now() + timedelta(seconds=90)
    cut_at = store_side.now()
    store_side.store.publish_throttle(until)
    store_side.store.publish_throttle(until - timedelta(seconds=30))
    store_side.store.publish_throttle(cut_at, scope="concurrency")

    assert store_side.store.throttle_marks() == {"dataverse": until, "concurrency": cut_at}
    assert store_side.store.claim(queued(store_side), lease_seconds=LEASE).throttled_for_seconds > 60


def transient(reason: str = "Dataverse no HTTP response: ConnectionError") -> Attempt:
    """A final attempt that failed for a transient reason (the deliveries ran out)."""
    return Attempt(outcome="failed", duration_ms=1.0, error=reason, failure_class="transient")


def test_a_last_transient_failure_after_an_unheard_write_stays_error(store_side: StoreHarness) -> None:
    company = queued(store_side, 0)
    held = claim(store_side, company)
    # a write was sent and its answer lost: recorded as an error that may have landed
    store_side.store.finish_failure(company, held.token, failed("error", "Dataverse no HTTP response"), version=T0,
                                    final=False, unconfirmed_write=True)
    held = claim(store_side, company)

    # the last delivery fails transiently too (this time with nothing sent)
    assert store_side.store.finish_failure(company, held.token, transient("Dataverse HTTP 503: down"), version=T0,
                                           final=True)

    state = store_side.store.lead_state(company)
    assert (state["status"], state["last_error"]) == ("error", "Dataverse HTTP 503: down")
    assert store_side.column(company, "failed_version") is None  # left for the sweeper, not failed

    held = claim(store_side, company)  # a permanent failure is final all the same
    store_side.store.finish_failure(company, held.token, failed("failed", "Dataverse HTTP 400: bad"), version=T0,
                                    final=True, unconfirmed_write=True)
    assert status(store_side, company) == "failed"


def test_a_newer_version_forgets_the_unheard_write(store_side: StoreHarness) -> None:
    company = queued(store_side, 0)
    held = claim(store_side, company)
    store_side.store.finish_failure(company, held.token, transient(), version=T0, final=True, unconfirmed_write=True)
    assert status(store_side, company) == "error"

    store_side.store.record_queued([message(company, 1)])
    held = claim(store_side, company)
    store_side.store.finish_failure(company, held.token, transient("Dataverse HTTP 503: down"),
                                    version=T0 + timedelta(minutes=1), final=True)
    assert status(store_side, company) == "failed"


def test_a_lead_with_nothing_to_write_keeps_its_status_while_held(store_side: StoreHarness) -> None:
    company = queued(store_side)
    held = claim(store_side, company)
    store_side.store.finish_synced(company, held.token, ok(d365_lead_id=f"{ID_A[:-12]}{company % 10**12:012d}"),
                                   version=T0, etag="e", fingerprint="f", warnings=[])
    claim(store_side, company)
    assert status(store_side, company) == "synced"


# --- the pipeline's pause ------------------------------------------------------------------------


def test_while_paused_no_lead_is_claimed_but_one_claim_probes(store_side: StoreHarness) -> None:
    first, second = queued(store_side), queued(store_side)
    assert store_side.store.pause() is None

    assert store_side.store.open_pause("privilege", "missing prvCreateLead", probe_seconds=0)
    assert not store_side.store.open_pause("privilege", "missing prvCreateLead", probe_seconds=0)  # already open

    probe = store_side.store.claim(first, lease_seconds=LEASE, probe_seconds=30)
    assert (probe.status, probe.probing, probe.paused_reason) == (ClaimStatus.CLAIMED, True, "privilege")
    assert 29 <= probe.probe_in_seconds <= 30
    waiting = store_side.store.claim(second, lease_seconds=LEASE, probe_seconds=30)
    assert (waiting.status, waiting.probing, waiting.paused_reason) == (ClaimStatus.PAUSED, False, "privilege")
    assert waiting.token is None and 29 <= waiting.probe_in_seconds <= 30
    assert status(store_side, second) == "queued"
    assert store_side.store.pause().detail == "missing prvCreateLead"


def test_a_probe_that_proved_nothing_lets_the_next_claim_probe(store_side: StoreHarness) -> None:
    first, second = queued(store_side), queued(store_side)
    store_side.store.open_pause("credentials", "invalid_client", probe_seconds=300)
    assert store_side.store.claim(first, lease_seconds=LEASE).status is ClaimStatus.PAUSED

    store_side.store.probe_again()

    assert store_side.store.claim(second, lease_seconds=LEASE).probing


def test_closing_the_pause_frees_every_lead(store_side: StoreHarness) -> None:
    company = queued(store_side)
    store_side.store.open_pause("org_unavailable", "admin mode", probe_seconds=300)

    assert store_side.store.close_pause() == "org_unavailable"
    assert store_side.store.close_pause() is None

    claimed = claim(store_side, company)
    assert (claimed.paused_reason, claimed.probing) == (None, False)


def test_a_paused_push_is_audited_as_paused_without_counting_an_attempt(store_side: StoreHarness) -> None:
    company = queued(store_side)
    held = claim(store_side, company)

    assert store_side.store.release(company, held.token, ok("paused", error="Dataverse HTTP 403: missing prv"))

    state = store_side.store.lead_state(company)
    assert (state["status"], state["attempts"]) == ("queued", 0)
    assert [a["outcome"] for a in store_side.attempts(company)] == ["paused"]


# --- the CRM's outcomes --------------------------------------------------------------------------


def _synced_at(side: StoreHarness, record_id: str, **synced) -> int:
    company = queued(side)
    held = claim(side, company)
    assert side.store.finish_synced(company, held.token, ok(d365_lead_id=record_id), version=T0, etag="e",
                                    fingerprint="f", warnings=[], synced=Synced(**synced))
    return company


def _record_id(company: int, n: int = 0) -> str:
    return f"{ID_A[:-12]}{(company * 10 + n) % 10**12:012d}"


def test_a_write_remembers_what_it_sent_and_what_the_crm_showed(store_side: StoreHarness) -> None:
    company = new_company_id()
    record = _record_id(company)
    store_side.store.record_queued([message(company)])
    held = claim(store_side, company)
    memory = ColumnMemory({"subject": "Hunter: c.example", "hnt_score": 7}, frozenset({"companyname"}))
    crm = CrmOutcome(CrmState.QUALIFIED, status_code=3, owner_id="5a5e0000-0000-4000-8000-00000000a001")
    assert store_side.store.finish_synced(company, held.token, ok(d365_lead_id=record), version=T0, etag="e",
                                          fingerprint="f", warnings=[], synced=Synced(memory, crm))

    again = claim(store_side, company).state
    assert again.memory == memory and again.crm_state is CrmState.QUALIFIED and not again.force_write
    state = store_side.store.lead_state(company)
    assert (state["crm_state"], state["crm_status_code"], state["crm_owner_id"]) == (
        "qualified", 3, "5a5e0000-0000-4000-8000-00000000a001")
    assert state["crm_seen_at"] is not None


def test_the_outcome_reader_is_held_by_one_instance_and_moves_forward_only(store_side: StoreHarness) -> None:
    first, second = "00000000-0000-4000-8000-0000000000a1", "00000000-0000-4000-8000-0000000000a2"
    leased, since = store_side.store.lease_outcome_reader(first, lease_seconds=60)
    assert leased
    assert store_side.store.lease_outcome_reader(second, lease_seconds=60) == (False, None)
    assert store_side.store.advance_outcome_reader(first, T0 + timedelta(minutes=5))
    assert store_side.store.advance_outcome_reader(first, T0)  # never back
    assert not store_side.store.advance_outcome_reader(second, T0 + timedelta(days=1))
    store_side.store.release_outcome_reader(first)

    leased, since = store_side.store.lease_outcome_reader(second, lease_seconds=60)
    assert leased and since >= T0 + timedelta(minutes=5)
    store_side.store.release_outcome_reader(second)


def test_an_outcome_lands_on_the_lead_holding_the_record_and_a_reopened_lead_is_due(store_side: StoreHarness) -> None:
    company = new_company_id()
    record = _record_id(company)
    store_side.store.record_queued([message(company)])
    held = claim(store_side, company)
    store_side.store.finish_synced(company, held.token, ok(d365_lead_id=record), version=T0, etag="e",
                                   fingerprint="f", warnings=[], synced=Synced(crm=CrmOutcome(CrmState.OPEN, 1)))

    assert store_side.store.record_crm_outcome(record.upper(), CrmOutcome(CrmState.QUALIFIED, 3)) == (company, None)
    assert store_side.store.lead_state(company)["crm_state"] == "qualified"
    stored = store_side.store.record_crm_outcome(record, CrmOutcome(CrmState.OPEN, 2))

    assert stored is not None and stored[1] is not None and stored[1].company_id == company
    state = store_side.store.lead_state(company)
    assert (state["crm_state"], state["crm_status_code"], state["status"]) == ("open", 2, "queued")
    assert store_side.store.record_crm_outcome("00000000-0000-4000-8000-00000000dead",
                                               CrmOutcome(CrmState.OPEN)) is None


def test_a_merge_is_followed_to_a_free_master_and_named_when_another_lead_holds_it(store_side: StoreHarness) -> None:
    company, other = new_company_id(), new_company_id()
    record, master, others_record = _record_id(company, 1), _record_id(company, 2), _record_id(other, 3)
    for cid, rid in ((company, record), (other, others_record)):
        store_side.store.record_queued([message(cid)])
        held = claim(store_side, cid)
        store_side.store.finish_synced(cid, held.token, ok(d365_lead_id=rid), version=T0, etag="e",
                                       fingerprint="f", warnings=[])

    store_side.store.record_crm_outcome(record, CrmOutcome(CrmState.DISQUALIFIED, 7, merged_into=master))
    assert store_side.store.lead_state(company)["d365_lead_id"] == master

    store_side.store.record_crm_outcome(master, CrmOutcome(CrmState.DISQUALIFIED, 7, merged_into=others_record))
    state = store_side.store.lead_state(company)
    assert (state["d365_lead_id"], state["crm_state"], state["crm_merged_into"]) == (master, "merged", others_record)


def test_a_replayed_lead_is_forced_through_once(store_side: StoreHarness) -> None:
    company = _synced_at(store_side, _record_id(new_company_id()), crm=CrmOutcome(CrmState.DELETED))
    store_side.store.reset_for_replay(company)
    assert claim(store_side, company).state.force_write
