"""The fault run of issue 3 with three hosts on one queue, PgBouncer (transaction mode) between them
and PostgreSQL, and PgBouncer's server connections cut every few seconds."""
from __future__ import annotations

import threading

from tests.app.helpers import lead, post_leads, queue_length, wait_for
from tests.conftest import WEBHOOK_SECRET
from tests.scaleout.observe import ConnectionCutter, ConnectionWatch, all_synced, newest_versions_hold

HOSTS = 3
POOL_MAX = 4
CUT_EVERY_SECONDS = 3.0


def test_three_hosts_through_pgbouncer_sync_every_lead_once_with_its_newest_version_under_faults(
        app_env, dataverse, local_host, azurite, bounced_database):
    # given: a throttling, failing, connection-dropping Dataverse; three hosts on one queue, through PgBouncer
    emulator = dataverse("mvp")
    env = app_env(emulator, DATABASE_URL=bounced_database.url, DATABASE_POOL_MAX=str(POOL_MAX),
                  LEAD_LEASE_SECONDS="10")
    hosts = [local_host(env) for _ in range(HOSTS)]
    emulator.set_faults(rate_limit=0.15, retry_after=1, server_error=0.05, drop_before=0.03,
                        drop_after_commit=0.05, seed=20261129)
    base = 40_000
    first = [lead(base + i, readiness_score=10, updated_at="2026-11-27T08:00:00Z") for i in range(240)]
    later = [lead(base + i, readiness_score=90, updated_at="2026-11-27T09:00:00Z") for i in range(0, 240, 4)]
    expected = {x["company_id"]: 10 for x in first} | {x["company_id"]: 90 for x in later}
    responses: list[int] = []

    def post(host_url: str, chunk: list[dict]) -> None:
        responses.append(post_leads(host_url, {"leads": chunk}, secret=WEBHOOK_SECRET).status_code)

    watch = ConnectionWatch(bounced_database.direct_url, bouncer_port=bounced_database.bouncer.port,
                            host_pids=lambda: [h.process.pid for h in hosts])
    with watch, ConnectionCutter(bounced_database.direct_url, every=CUT_EVERY_SECONDS) as cutter:
        # when: the first versions and, concurrently, later versions of a quarter of them arrive, at every host
        chunks = [first[i:i + 40] for i in range(0, 240, 40)] + [later[i:i + 20] for i in range(0, 60, 20)]
        posters = [threading.Thread(target=post, args=(hosts[n % HOSTS].url, chunk)) for n, chunk in enumerate(chunks)]
        for t in posters:
            t.start()
        for t in posters:
            t.join()
        assert responses == [202] * len(posters)
        wait_for(lambda: all_synced(bounced_database.direct_url, sorted(expected)), timeout=180, interval=0.5,
                 what="every lead synced")

    # then
    emulator.clear_faults()
    newest_versions_hold(emulator.leads(), expected)
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
    stats = emulator.stats()["status_counts"]
    assert stats.get("429", 0) > 0 and stats.get("503", 0) > 0, "the faults were really injected"
    assert cutter.cut > 0, "server connections were really cut"
    assert watch.errors == [] and watch.samples > 0
    assert 0 < watch.peak_server <= min(bounced_database.bouncer.default_pool_size, POOL_MAX * HOSTS)
    assert 0 < watch.peak_per_host <= POOL_MAX
