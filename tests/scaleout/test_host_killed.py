"""A host killed with SIGKILL in the middle of a run, then started again."""
from __future__ import annotations

import os
import signal

import psycopg2.extras

from tests.app.helpers import lead, post_leads, queue_length, wait_for
from tests.conftest import WEBHOOK_SECRET
from tests.scaleout.observe import all_synced, newest_versions_hold, observer_connection, sync_rows

LEASE_SECONDS = 4          # the lead's lease in PostgreSQL (the least allowed)
MESSAGE_LEASE_SECONDS = 6  # how long the local host hides a message it received (10 minutes in Azure)


def _leased(database_url: str) -> dict[int, object]:
    """Leads never synced whose lease is running now, with its end."""
    conn = observer_connection(database_url)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("SELECT company_id, lease_until FROM lead_sync"
                        " WHERE lease_until > now() AND last_success_at IS NULL")
            return {row["company_id"]: row["lease_until"] for row in cur.fetchall()}
    finally:
        conn.close()


def _now(database_url: str) -> object:
    conn = observer_connection(database_url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT now()")
            return cur.fetchone()[0]
    finally:
        conn.close()


def test_a_host_killed_mid_run_and_started_again_loses_duplicates_and_leaves_stale_nothing(
        app_env, dataverse, local_host, azurite, bounced_database):
    # given: one host pushing through PgBouncer to a slow Dataverse, with short leases
    emulator = dataverse("mvp")
    emulator.set_faults(latency_ms=200)
    env = app_env(emulator, DATABASE_URL=bounced_database.url, LEAD_LEASE_SECONDS=str(LEASE_SECONDS),
                  FUNCHOST_MESSAGE_LEASE_SECONDS=str(MESSAGE_LEASE_SECONDS))
    victim = local_host(env)
    base = 50_000
    first = [lead(base + i, readiness_score=10, updated_at="2026-11-27T08:00:00Z") for i in range(200)]
    later = [lead(base + i, readiness_score=90, updated_at="2026-11-27T09:00:00Z") for i in range(0, 200, 4)]
    expected = {x["company_id"]: 10 for x in first} | {x["company_id"]: 90 for x in later}
    ids = sorted(expected)
    assert post_leads(victim.url, {"leads": first}, secret=WEBHOOK_SECRET).status_code == 202

    # when: it is killed while it holds leads, mid-push; another host takes over, later versions
    # arrive, and the killed host starts again
    def pushing() -> dict[int, object] | None:
        synced = sum(1 for r in sync_rows(bounced_database.direct_url, ids).values() if r["status"] == "synced")
        held = _leased(bounced_database.direct_url)
        return held if synced >= 20 and len(held) >= 5 else None

    wait_for(pushing, timeout=60, interval=0.05, what="the host pushing leads")
    os.killpg(victim.process.pid, signal.SIGKILL)
    victim.process.popen.wait(10)
    killed_at = _now(bounced_database.direct_url)
    held = _leased(bounced_database.direct_url)  # leases taken just before the kill count too
    survivor = local_host(env)
    assert post_leads(survivor.url, {"leads": later}, secret=WEBHOOK_SECRET).status_code == 202
    restarted = local_host(env)

    # then: every lead synced once with its newest version, the killed host's leads included,
    # each finished after the lease it held at the kill ran out
    rows = wait_for(lambda: all_synced(bounced_database.direct_url, ids), timeout=120, interval=0.5,
                    what="every lead synced")
    newest_versions_hold(emulator.leads(), expected)
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
    assert held, "the host held leads when it was killed"
    # A statement the victim sent just before the kill may still commit after it (PgBouncer and
    # PostgreSQL run it on): its success is stamped before the kill, within the victim's own lease.
    finished_early = {c: (rows[c]["last_success_at"], until) for c, until in held.items()
                      if killed_at < rows[c]["last_success_at"] < until}
    assert finished_early == {}
    assert restarted.process.running() and survivor.process.running()
