"""Bulk writes (issue 12) through the local host: a backlog is written in a handful of requests, and
a lead Dataverse always rejects fails alone, with its reason, in the poison queue."""
from __future__ import annotations

import pytest

from local.emulators.control_client import EmulatorControl
from shared.writes.lead_writer import deterministic_lead_id
from tests.app.helpers import attempts, lead, post_leads, queue_length, sync_rows, wait_for
from tests.conftest import WEBHOOK_SECRET

LEADS = range(70_000, 70_500)
BAD = 70_123


def data_requests(emulator: EmulatorControl) -> dict[str, int]:
    return {kind: n for kind, n in emulator.stats()["by_kind"].items() if kind not in ("metadata", "whoami")}


@pytest.mark.parametrize("bulk_supported, write_kind", [(True, "POST UpsertMultiple"), (False, "POST $batch")],
                         ids=["UpsertMultiple", "$batch"])
def test_a_backlog_is_written_in_a_handful_of_requests_and_a_bad_lead_fails_alone(
        app_env, dataverse, local_host, azurite, fresh_database, bulk_supported, write_kind):
    # given an org that rejects one of 500 leads, with or without bulk support for `lead`
    emulator = dataverse("mvp")
    emulator.set_bulk_support(bulk_supported)
    emulator.control("POST", "rules", json={"column": "companyname", "equals": f"company{BAD}", "status": 400,
                                            "code": "0x80040265", "message": "Plug-in rejected this lead"})
    env = app_env(emulator, DATABASE_URL=fresh_database, D365_BULK_SIZE="100")
    host = local_host(env)

    # when the 500 come in one webhook call
    assert post_leads(host.url, {"leads": [lead(i) for i in LEADS]}, secret=WEBHOOK_SECRET).status_code == 202

    # then 499 are synced, each in its own record, and the bad one failed with its reason, in poison
    wait_for(lambda: sum(r["status"] in ("synced", "failed") for r in sync_rows(fresh_database, list(LEADS)).values())
             == len(LEADS), timeout=90, what="every lead synced or failed")
    rows = sync_rows(fresh_database, list(LEADS))
    assert {c for c, r in rows.items() if r["status"] != "synced"} == {BAD}, \
        {c: r["last_error"] for c, r in rows.items() if r["status"] != "synced"}
    assert rows[BAD]["status"] == "failed" and "Plug-in rejected this lead" in rows[BAD]["last_error"]
    records = {r["hnt_companyid"]: r for r in emulator.leads()}
    assert set(records) == set(LEADS) - {BAD}
    assert all(records[c]["leadid"] == deterministic_lead_id(c) for c in records)
    wait_for(lambda: queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 1, what="the bad lead in poison")
    assert [a["outcome"] for a in attempts(fresh_database, BAD)][-1] in ("failed", "skipped")

    requests = data_requests(emulator)
    assert requests.get(write_kind, 0) >= 5
    assert sum(requests.values()) <= 60, requests  # against 1,000 (a lookup and a write each) one by one
