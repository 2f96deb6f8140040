"""Issue 8: a managed-identity endpoint that answers 5xx is transient, not a final failure."""

from __future__ import annotations

import requests

from tests.app.helpers import attempts, lead, queue_length
from tests.failure_modes.support import fresh, identity_control, post, wait_statuses


def test_identity_endpoint_failing_twice_then_working_syncs_the_lead(
    app_env, dataverse, identity, local_host, azurite, database_url
):
    company_id = 8400
    fresh(database_url, company_id)
    emulator = dataverse("mvp")
    env = app_env(emulator)
    host = local_host(env)  # a cold host: no token yet
    control = identity_control(identity)
    before = requests.get(f"{control}/stats", timeout=10).json()["token_requests"]
    script = {"script": [{"status": 500, "message": "MSI endpoint failed"}, {"status": 500}]}
    assert requests.post(f"{control}/faults", json=script, timeout=10).status_code == 200
    try:
        assert post(host, lead(company_id)).status_code == 202

        row = wait_statuses(database_url, {company_id: "synced"}, timeout=60)[company_id]
    finally:  # the identity emulator serves the whole session
        requests.delete(f"{control}/faults", timeout=10)
    stats = requests.get(f"{control}/stats", timeout=10).json()
    assert stats["faults_remaining"] == 0 and stats["token_requests"] - before >= 3, "both 500s were answered"
    assert [r["hnt_companyid"] for r in emulator.leads()] == [company_id]
    assert row["last_error"] is None
    outcomes = [a["outcome"] for a in attempts(database_url, company_id)]
    assert outcomes[-1] == "created" and "failed" not in outcomes, outcomes
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
