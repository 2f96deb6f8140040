"""The lead table's metadata unreadable on a cold host (an outage, throttling).

The lead shows the failure at once, the remembered failure bounds the metadata requests (not the
number of leads), and once the cause is gone the leads sync. A missing privilege is not the lead's
failure but the org's: it pauses the pipeline (tests/outages/test_configuration_outage.py).
"""

from __future__ import annotations

import time

from tests.app.helpers import attempts, lead, queue_length, sync_rows, wait_for
from tests.failure_modes.support import fresh, lead_status, metadata_requests, post, wait_statuses

FAILURE_TTL = 4  # D365_METADATA_FAILURE_TTL_SECONDS
LEADS = 30
OUTAGE = {"status": 503, "message": "The service is temporarily unavailable."}


def test_unreadable_metadata_is_recorded_bounded_and_recovers(app_env, dataverse, local_host, azurite, database_url):
    answer, status, first_id = OUTAGE, "error", 8340
    ids = list(range(first_id, first_id + LEADS))
    fresh(database_url, *ids)
    emulator = dataverse("mvp")
    env = app_env(emulator, D365_METADATA_FAILURE_TTL_SECONDS=str(FAILURE_TTL))
    host = local_host(env)
    emulator.set_faults(every=answer)
    emulator.control("POST", "stats/reset")

    # when: one lead, then the other 29 in one call, reach a cold host whose metadata read fails
    started = time.monotonic()
    assert post(host, lead(ids[0])).status_code == 202
    wait_statuses(database_url, {ids[0]: status}, timeout=20)
    one_load = metadata_requests(emulator)
    assert post(host, {"leads": [lead(c) for c in ids[1:]]}).status_code == 202
    rows = wait_statuses(database_url, dict.fromkeys(ids, status), timeout=20)
    elapsed = time.monotonic() - started

    # then: every lead says why, at once
    cause = "503"
    for company_id in ids:
        assert cause in (rows[company_id]["last_error"] or ""), rows[company_id]
    shown = lead_status(host, ids[-1])
    assert shown["status"] == status and cause in shown["last_error"]
    first = attempts(database_url, ids[0])[0]
    assert (first["outcome"], first["http_status"]) == (status, answer["status"])

    # and the outage cost metadata requests per remembered-failure window, not per lead
    sent = emulator.stats()["by_kind"]
    outage_requests = metadata_requests(emulator)
    windows = int(elapsed // FAILURE_TTL) + 1
    print(
        f"metadata requests during the outage: {outage_requests} for {LEADS} leads "
        f"(one failed load {one_load}, {elapsed:.1f} s, {windows} window(s))"
    )
    assert 1 <= one_load <= 3, "one failed load: its first request, retried at most twice when transient"
    assert outage_requests <= one_load * windows, sent
    assert outage_requests < LEADS
    assert {kind for kind, n in sent.items() if n} == {"metadata"}, "nothing but metadata was asked"

    # when the privilege is granted, or the outage ends
    emulator.clear_faults()
    time.sleep(FAILURE_TTL)  # the remembered failure runs out

    # then
    rows = wait_statuses(database_url, dict.fromkeys(ids, "synced"), timeout=90)
    assert sorted(r["hnt_companyid"] for r in emulator.leads()) == ids
    assert all(rows[c]["last_error"] is None for c in ids)
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0


def test_metadata_throttled_on_a_cold_host_defers_every_lead_for_its_retry_after(
    app_env, dataverse, local_host, azurite, database_url
):
    ids = list(range(8380, 8380 + LEADS))
    fresh(database_url, *ids)
    emulator = dataverse("mvp")
    emulator.reset()  # the emulator serves the session: another test's records are not ours
    env = app_env(emulator, D365_INLINE_RETRY_AFTER_SECONDS="1")
    host = local_host(env)
    emulator.set_faults(every={"status": 429, "retry_after": 6})
    emulator.control("POST", "stats/reset")

    assert post(host, {"leads": [lead(c) for c in ids]}).status_code == 202

    def all_deferred() -> bool:
        return all(any(a["outcome"] == "deferred" for a in attempts(database_url, c)) for c in ids)

    wait_for(all_deferred, timeout=20, what="every lead deferred")
    throttled = metadata_requests(emulator)
    emulator.clear_faults()
    assert throttled <= 2, f"{throttled} metadata requests for {LEADS} leads: the Retry-After is shared"
    rows = sync_rows(database_url, ids)
    assert all(rows[c]["status"] == "queued" and rows[c]["attempts"] == 0 for c in ids), "a 429 is no attempt"

    rows = wait_statuses(database_url, dict.fromkeys(ids, "synced"), timeout=60)
    assert sorted(r["hnt_companyid"] for r in emulator.leads()) == ids
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
