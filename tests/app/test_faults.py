"""Exactly once under faults, through the local host with parallel workers."""
from __future__ import annotations

import secrets
import threading

from local import services
from shared.postgres.migrate import migrate
from tests.app.helpers import lead, post_leads, queue_length, sync_rows, wait_for
from tests.conftest import WEBHOOK_SECRET


def _all_synced(database_url: str, company_ids: list[int]):
    rows = sync_rows(database_url, company_ids)
    return rows if len(rows) == len(company_ids) and all(r["status"] == "synced" for r in rows.values()) else None


def _newest_versions_hold(emulator, expected: dict[int, int]) -> None:
    by_company: dict[int, list[dict]] = {}
    for record in emulator.leads():
        by_company.setdefault(record["hnt_companyid"], []).append(record)
    assert sorted(by_company) == sorted(expected), "every lead exactly once in Dataverse"
    duplicates = {c: len(r) for c, r in by_company.items() if len(r) != 1}
    assert duplicates == {}
    stale = {c: r[0]["hnt_finalscore"] for c, r in by_company.items() if r[0]["hnt_finalscore"] != expected[c]}
    assert stale == {}


def test_every_lead_synced_exactly_once_with_its_newest_version_under_faults(
        app_env, dataverse, local_host, azurite, database_url):
    # given: a throttling, failing, connection-dropping Dataverse
    emulator = dataverse("mvp")
    env = app_env(emulator)
    host = local_host(env)
    emulator.set_faults(rate_limit=0.15, retry_after=1, server_error=0.05, drop_before=0.03,
                        drop_after_commit=0.05, seed=20261127)
    base = 20_000
    first = [lead(base + i, readiness_score=10, updated_at="2026-11-27T08:00:00Z") for i in range(240)]
    later = [lead(base + i, readiness_score=90, updated_at="2026-11-27T09:00:00Z") for i in range(0, 240, 4)]
    expected = {l["company_id"]: 10 for l in first} | {l["company_id"]: 90 for l in later}

    # when: the first versions and, concurrently, later versions of a quarter of them arrive
    responses = []

    def post(chunk):
        responses.append(post_leads(host.url, {"leads": chunk}, secret=WEBHOOK_SECRET).status_code)

    posters = [threading.Thread(target=post, args=(first[i:i + 40],)) for i in range(0, 240, 40)]
    posters += [threading.Thread(target=post, args=(later[i:i + 20],)) for i in range(0, 60, 20)]
    for t in posters:
        t.start()
    for t in posters:
        t.join()
    assert responses == [202] * len(posters)

    # then
    wait_for(lambda: _all_synced(database_url, sorted(expected)), timeout=180, interval=0.5,
             what="every lead synced")
    emulator.clear_faults()
    _newest_versions_hold(emulator, expected)
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
    stats = emulator.stats()["status_counts"]
    assert stats.get("429", 0) > 0 and stats.get("503", 0) > 0, "the faults were really injected"


def test_database_going_away_mid_run_loses_and_duplicates_nothing(app_env, dataverse, local_host, azurite):
    # given: a PostgreSQL of our own that we can stop
    server = services.start_throwaway_postgres()
    try:
        name = f"leadpush_outage_{secrets.token_hex(3)}"
        database_url = services.create_database(server.url, name)
        migrate(database_url)
        emulator = dataverse("mvp")
        emulator.set_faults(latency_ms=20)
        host = local_host(app_env(emulator, DATABASE_URL=database_url))
        leads = [lead(30_000 + i) for i in range(80)]
        assert post_leads(host.url, {"leads": leads}, secret=WEBHOOK_SECRET).status_code == 202

        # when: the database stops while leads are being pushed, and comes back
        wait_for(lambda: len(emulator.leads()) >= 5, what="some leads pushed")
        server.stop()
        threading.Event().wait(3)
        server.start()

        # then
        ids = [l["company_id"] for l in leads]
        wait_for(lambda: _all_synced(database_url, ids), timeout=150, interval=0.5, what="every lead synced")
        _newest_versions_hold(emulator, {i: 90 for i in ids})
    finally:
        server.close()
