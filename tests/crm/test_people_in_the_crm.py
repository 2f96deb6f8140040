"""Through the local host and the Dataverse emulator over HTTP: a person's work in the CRM is not
undone, and what became of the lead comes back to the status API."""
from __future__ import annotations

import requests

from tests.app.helpers import lead, wait_for
from tests.failure_modes.support import fresh, post, wait_statuses


def _status(host, company_id: int) -> dict:
    response = requests.get(f"{host.url}/api/leads/{company_id}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_reps_columns_and_a_qualified_lead_are_left_as_people_made_them(
    app_env, dataverse, local_host, database_url
):
    edited, qualified = 8870, 8871
    fresh(database_url, edited, qualified)
    emulator = dataverse("mvp")
    emulator.reset()  # the emulator serves the session: another test's records are not ours
    host = local_host(app_env(emulator, CRM_OUTCOME_SCHEDULE="*/2 * * * * *", D365_BULK_SIZE="1"))
    for company_id in (edited, qualified):
        assert post(host, lead(company_id, readiness_score=50)).status_code == 202
    rows = wait_statuses(database_url, {edited: "synced", qualified: "synced"})
    edited_id, qualified_id = (str(rows[c]["d365_lead_id"]) for c in (edited, qualified))

    # when: a rep rewrites the topic and the company name, and qualifies the other lead
    emulator.edit_lead(edited_id, subject="Call back in May", companyname="Contoso (the real name)")
    emulator.qualify_lead(qualified_id)
    # and Hunter sends newer versions
    for company_id in (edited, qualified):
        newer = lead(company_id, readiness_score=95, updated_at="2026-11-27T10:00:00Z")
        assert post(host, newer).status_code == 202

    def written() -> bool:
        return emulator.lead(edited_id).get("hnt_finalscore") == 95

    wait_for(written, timeout=30, what="the newer version written")
    wait_statuses(database_url, {edited: "synced", qualified: "synced"})

    # then: the rep's values stand, Hunter's columns took the new version
    record = emulator.lead(edited_id)
    assert (record["subject"], record["companyname"]) == ("Call back in May", "Contoso (the real name)")
    assert record["hnt_finalscore"] == 95
    # and the qualified lead was left alone, its outcome shown
    closed = emulator.lead(qualified_id)
    assert closed["hnt_finalscore"] == 50 and closed["statecode"] == 1
    shown = wait_for(lambda: (s := _status(host, qualified))["crm"] and s["crm"]["owner_id"] and s,
                     timeout=30, what="the outcome reader's state")
    assert (shown["crm"]["state"], shown["crm"]["status_code"]) == ("qualified", 3)
    assert shown["status"] == "synced" and shown["last_error"] is None
    assert _status(host, edited)["crm"]["state"] == "open"
