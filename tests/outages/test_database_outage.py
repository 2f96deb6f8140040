"""PostgreSQL unreachable for longer than the retry budget (about 2.5 minutes with five deliveries):
nothing reaches the poison queue, the webhook answers 503 so Hunter posts again, and once the
database is back every lead syncs without a replay or the sweeper."""
from __future__ import annotations

import secrets
import threading
import time

import requests

from local import services
from shared.postgres.migrate import migrate
from tests.app.helpers import attempts, lead, post_leads, queue_length, sync_rows, wait_for
from tests.conftest import WEBHOOK_SECRET

OUTAGE_SECONDS = 240
FIRST = 20


def _synced(database_url: str, ids: list[int]) -> bool:
    rows = sync_rows(database_url, ids)
    return len(rows) == len(ids) and all(row["status"] == "synced" for row in rows.values())


def test_a_four_minute_database_outage_burns_no_lead(app_env, dataverse, local_host, azurite):
    server = services.start_throwaway_postgres()
    try:
        database_url = services.create_database(server.url, f"leadpush_outage_{secrets.token_hex(3)}")
        migrate(database_url)
        emulator = dataverse("mvp")
        emulator.reset()
        emulator.set_faults(latency_ms=1500)  # pushes still running when the database goes
        env = app_env(emulator, DATABASE_URL=database_url, D365_BULK_SIZE="1")
        hosts = [local_host(env), local_host(env)]
        first = [40_000 + i for i in range(FIRST)]
        assert post_leads(hosts[0].url, {"leads": [lead(c) for c in first]}, secret=WEBHOOK_SECRET).status_code == 202
        wait_for(lambda: len(emulator.leads()) >= 2, what="some leads pushed")

        # when: the database stops for four minutes while leads are being pushed and posted
        server.stop()
        stopped = time.monotonic()
        in_dataverse_at_stop = len(emulator.leads())
        during = [40_100 + i for i in range(5)]
        refused = [post_leads(hosts[i % 2].url, lead(c), secret=WEBHOOK_SECRET) for i, c in enumerate(during)]
        health = requests.get(f"{hosts[0].url}/api/health", timeout=30)
        threading.Event().wait(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped)))
        poisoned_during = queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison")
        server.start()
        back = time.monotonic()

        # then: the webhook refused with 503 (Hunter posts again), health said why, nothing was poisoned
        assert [r.status_code for r in refused] == [503] * len(during), [r.text for r in refused]
        assert health.status_code == 503 and health.json()["checks"]["database"] == "unavailable"
        assert poisoned_during == 0
        assert in_dataverse_at_stop < FIRST, "the outage began while leads were still being pushed"
        for i, company_id in enumerate(during):  # Hunter's retry
            assert post_leads(hosts[i % 2].url, lead(company_id), secret=WEBHOOK_SECRET).status_code == 202

        ids = first + during
        wait_for(lambda: _synced(database_url, ids), timeout=150, interval=1, what="every lead synced")
        print(f"every lead synced {time.monotonic() - back:.0f} s after the database came back")
        assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
        assert sorted(r["hnt_companyid"] for r in emulator.leads()) == sorted(ids)
        outcomes = {a["outcome"] for c in ids for a in attempts(database_url, c)}
        assert "failed" not in outcomes, outcomes
    finally:
        server.close()
