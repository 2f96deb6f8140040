"""Issue 8: a lead bigger than one queue message could hold is carried whole to Dataverse.

A 30,000-character summary of three-byte UTF-8 characters is about 90 KB of JSON, 120 KB in
base64: far over a Storage queue message's 64 KiB. The webhook never answers 5xx for it, and the
summary arrives cut only to the column's MaxLength, with a warning on the lead's row.
"""

from __future__ import annotations

import pytest

from tests.app.helpers import lead, queue_length
from tests.failure_modes.support import fresh, lead_status, post, wait_statuses

SUMMARY = ("基盤の要約、サーバー室はİstanbulにあり、回線は二系統✓ " * 1000)[:30_000]


def _max_length(emulator, column: str) -> int:
    return next(c["max_length"] for c in emulator.control("GET", "schema")["columns"] if c["logical_name"] == column)


@pytest.mark.parametrize("batch", [False, True], ids=["alone", "in_a_batch"])
def test_a_30000_character_non_ascii_summary_is_synced_cut_only_to_max_length(
    app_env, dataverse, local_host, azurite, database_url, batch
):
    assert len(SUMMARY) == 30_000 and len(SUMMARY.encode()) > 64 * 1024
    big = 8500 if not batch else 8510
    others = list(range(big + 1, big + 9)) if batch else []
    fresh(database_url, big, *others)
    emulator = dataverse("mvp")
    env = app_env(emulator)
    host = local_host(env)
    body = lead(big, infrastructure_summary=SUMMARY)
    if batch:
        body = {"leads": [lead(others[0]), lead(others[1]), body, *[lead(c) for c in others[2:]]]}

    response = post(host, body)

    assert response.status_code == 202, response.text
    rows = wait_statuses(database_url, dict.fromkeys([big, *others], "synced"))
    records = {r["hnt_companyid"]: r for r in emulator.leads()}
    assert sorted(records) == sorted([big, *others])
    limit = _max_length(emulator, "hnt_infrasummary")
    assert records[big]["hnt_infrasummary"] == SUMMARY[:limit], "whole up to the column's MaxLength"
    assert any(w.startswith("hnt_infrasummary:") for w in rows[big]["warnings"]), rows[big]["warnings"]
    assert lead_status(host, big)["warnings"] == rows[big]["warnings"]
    for company_id in others:
        assert records[company_id]["hnt_infrasummary"] == "Country: IE; ..."
        assert rows[company_id]["warnings"] == []
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
