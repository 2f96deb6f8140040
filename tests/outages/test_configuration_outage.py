"""A Dataverse configuration outage pauses the pipeline; it never burns leads.

Two local hosts share one queue and one database. Dataverse's configuration breaks (a privilege
removed, the identity refused) while Hunter keeps posting: no lead fails, nothing reaches the poison
queue, `/api/health` says `paused`, the probes cost at most two Dataverse requests per probe interval
in all, and once the configuration is fixed every lead syncs by itself, without a replay.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest
import requests

from tests.app.helpers import attempts, lead, queue_length, sync_rows, wait_for
from tests.failure_modes.support import identity_control, lead_status, post, wait_statuses

PROBE_SECONDS = 5
OUTAGE_SECONDS = 45
FIRST, LATER = 10, 5


@dataclass(frozen=True)
class Outage:
    reason: str
    start: Callable[..., None]
    fix: Callable[..., None]


def _dataverse_refuses(answer: dict) -> Outage:
    return Outage(
        "privilege",
        lambda emulator, identity: emulator.set_faults(every=answer),
        lambda emulator, identity: emulator.clear_faults(),
    )


def _identity_refused() -> Outage:
    refusal = {"status": 400, "message": "Identity not found"}

    def start(emulator, identity) -> None:
        script = {"script": [refusal] * 10_000}
        assert requests.post(f"{identity_control(identity)}/faults", json=script, timeout=10).status_code == 200

    def fix(emulator, identity) -> None:
        requests.delete(f"{identity_control(identity)}/faults", timeout=10)

    return Outage("credentials", start, fix)


NO_READ_ENTITY = {"status": 403, "code": "0x80040220",
                  "message": "Principal user (Id=5a5e0000-0000-4000-8000-00000000a001, type=8, roleCount=1, "
                             "privilegeCount=0, accessMode=4), is missing prvReadEntity privilege "
                             "(Id=7b9c0000-0000-4000-8000-000000000001) on OTC=9800 for entity 'entity'."}
NO_WRITE = {"status": 403, "code": "0x80040220", "methods": ["PATCH", "POST"],
            "message": "Principal user (Id=5a5e0000-0000-4000-8000-00000000a001, type=8, roleCount=1, "
                       "privilegeCount=3, accessMode=4), is missing prvCreateLead privilege "
                       "(Id=7b9c0000-0000-4000-8000-000000000002) on OTC=4 for entity 'lead'."}
OUTAGES = {
    "metadata 403": _dataverse_refuses(NO_READ_ENTITY),
    "write privilege removed": _dataverse_refuses(NO_WRITE),
    "identity refused": _identity_refused(),
}


def _health(host) -> tuple[int, dict]:
    response = requests.get(f"{host.url}/api/health", timeout=10)
    return response.status_code, response.json()


def _pause_reason(database_url: str) -> str | None:
    import psycopg2

    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT reason FROM pipeline_pause")
        row = cur.fetchone()
    conn.close()
    return row[0] if row else None


@pytest.mark.parametrize("name", list(OUTAGES))
def test_a_configuration_outage_pauses_and_every_lead_syncs_after_the_fix(
    name, app_env, dataverse, identity, local_host, azurite, fresh_database
):
    outage = OUTAGES[name]
    emulator = dataverse("mvp")
    emulator.reset()
    env = app_env(emulator, DATABASE_URL=fresh_database, D365_PAUSE_PROBE_SECONDS=str(PROBE_SECONDS))
    hosts = [local_host(env), local_host(env)]
    if name == "write privilege removed":  # the metadata was read before the privilege went
        assert post(hosts[0], lead(9000)).status_code == 202 and post(hosts[1], lead(9001)).status_code == 202
        wait_statuses(fresh_database, {9000: "synced", 9001: "synced"}, timeout=60)
    first = list(range(9100, 9100 + FIRST))
    later = list(range(9200, 9200 + LATER))

    # when: the configuration breaks while Hunter posts
    outage.start(emulator, identity)
    try:
        for company_id in first:
            assert post(hosts[company_id % 2], lead(company_id)).status_code == 202
        wait_for(lambda: _pause_reason(fresh_database) == outage.reason, timeout=30, what="the pause")
        emulator.control("POST", "stats/reset")
        paused_at = time.monotonic()
        for company_id in later:
            assert post(hosts[company_id % 2], lead(company_id)).status_code == 202

        # then, during the pause: health says so, the leads wait, nothing fails
        for host in hosts:
            status, body = _health(host)
            assert (status, body["checks"]["dataverse"]) == (503, "paused"), body
            assert outage.reason not in str(body)  # the reason is for the log, not for anyone asking
        shown = lead_status(hosts[0], later[0])
        assert (shown["status"], shown["paused_reason"]) == ("paused", outage.reason), shown
        time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - paused_at)))
        paused_for = time.monotonic() - paused_at
        spent = sum(emulator.stats()["by_kind"].values())
        rows = sync_rows(fresh_database, first + later)
        assert all(row["status"] != "failed" and row["failed_version"] is None for row in rows.values()), rows
        assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
    finally:
        outage.fix(emulator, identity)

    # Dataverse requests of the probes: at most two per probe interval, in all, not per lead
    intervals = paused_for / PROBE_SECONDS + 1
    print(f"{name}: {spent} Dataverse requests in a {paused_for:.0f} s pause ({intervals:.1f} probe intervals)")
    assert spent <= 2 * intervals

    # and after the fix every lead syncs by itself, within a minute
    fixed_at = time.monotonic()
    wait_statuses(fresh_database, dict.fromkeys(first + later, "synced"), timeout=60)
    print(f"{name}: every lead synced {time.monotonic() - fixed_at:.1f} s after the fix")
    assert _pause_reason(fresh_database) is None
    assert all(_health(host)[0] == 200 for host in hosts)
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
    outcomes = {a["outcome"] for company_id in first + later for a in attempts(fresh_database, company_id)}
    assert "failed" not in outcomes and "error" not in outcomes, outcomes
