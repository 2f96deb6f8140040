"""The seed's end-to-end case: Hunter posts the company-86 lead to the running host over HTTP."""
from __future__ import annotations

import pytest
import requests

from tests.app.helpers import COMPANY_86, forget, post_leads, queue_length, sync_rows, wait_for
from tests.conftest import WEBHOOK_SECRET


@pytest.mark.parametrize("auth_mode", ["managed_identity", "client_secret"])
def test_company_86_lands_in_dataverse_and_postgres(app_env, dataverse, local_host, azurite, database_url, auth_mode):
    # given
    emulator = dataverse("mvp")
    env = app_env(emulator, D365_AUTH_MODE=auth_mode)
    host = local_host(env)
    forget(database_url, 86)

    # when
    response = post_leads(host.url, COMPANY_86, secret=WEBHOOK_SECRET)

    # then
    assert response.status_code == 202, response.text
    assert response.json()["company_ids"] == [86]
    wait_for(lambda: sync_rows(database_url, [86]).get(86, {}).get("status") == "synced", what="company 86 synced")
    row = sync_rows(database_url, [86])[86]
    records = emulator.leads()
    assert len(records) == 1
    record = records[0]
    assert str(row["d365_lead_id"]) == record["leadid"]
    assert row["attempts"] == 1 and row["last_error"] is None
    schema = emulator.control("GET", "schema")
    options = {c["logical_name"]: {o["label"]: o["value"] for o in c["options"]} for c in schema["columns"]}
    assert record["subject"] == "Hunter: uppoint.com.tr"
    assert record["companyname"] == "uppoint"
    assert record["websiteurl"] == "https://uppoint.com.tr"
    assert record["emailaddress1"] == "it@uppoint.com.tr"
    assert record["hnt_finalscore"] == 90
    assert record["hnt_m365fitscore"] == 90
    assert record["hnt_priorityscore"] == 3
    assert record["hnt_provider"] == "M365"
    assert record["hnt_infrasummary"] == "Country: IE; ..."
    assert record["hnt_segment"] == options["hnt_segment"]["Existing"]
    assert record["hnt_huntertenantsize"] == options["hnt_huntertenantsize"]["Medium"]
    assert record["hnt_source"] == options["hnt_source"]["Manual"]
    assert record["hnt_processingstatus"] == options["hnt_processingstatus"]["Idle"]
    assert record.get("hnt_referralid") is None and record.get("hnt_referraltype") is None
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"]) == 0
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0

    state = requests.get(f"{host.url}/api/leads/86", timeout=10).json()
    assert state["status"] == "synced" and state["d365_lead_id"] == record["leadid"]

    log = host.log_path.read_text()
    assert "d365_push_success" in log and "d365_token_acquired" in log
    secrets = [env.get("IDENTITY_HEADER") or env["D365_CLIENT_SECRET"], "it@uppoint.com.tr", WEBHOOK_SECRET, "AccountKey="]
    for secret in secrets:
        assert secret not in log
