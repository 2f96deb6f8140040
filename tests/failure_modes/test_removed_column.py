"""Issue 8: a column the org removed between metadata refreshes is noticed in both forms Dataverse
answers an unknown body property with (docs/dataverse.md section 5): the documented code 0x0 and the
newer live 0x80048d19. The metadata is read again and the lead syncs without the column."""

from __future__ import annotations

import pytest

from tests.app.helpers import attempts, lead, queue_length
from tests.failure_modes.support import fresh, metadata_requests, post, wait_statuses


@pytest.mark.parametrize("code", ["0x0", "0x80048d19"])
def test_a_removed_column_is_noticed_and_left_out(app_env, dataverse, local_host, azurite, database_url, code):
    first, second = (8700, 8701) if code == "0x0" else (8710, 8711)
    fresh(database_url, first, second)
    emulator = dataverse("mvp")
    env = app_env(emulator)
    host = local_host(env)
    assert post(host, lead(first)).status_code == 202
    wait_statuses(database_url, {first: "synced"})  # the host now holds metadata with hnt_provider
    emulator.set_unknown_property_form(code)
    emulator.control("DELETE", "schema/columns/hnt_provider")
    reads_before = metadata_requests(emulator)

    assert post(host, lead(second)).status_code == 202

    row = wait_statuses(database_url, {second: "synced"}, timeout=60)[second]
    refused = attempts(database_url, second)[0]
    assert (refused["outcome"], refused["http_status"], refused["error_code"]) == ("error", 400, code), refused
    assert "hnt_provider" in refused["error"]
    assert metadata_requests(emulator) > reads_before, "the metadata was read again"
    record = next(r for r in emulator.leads() if r["hnt_companyid"] == second)
    assert "hnt_provider" not in record and record["companyname"] == f"company{second}"
    assert row["attempts"] == 2 and row["last_error"] is None
    assert queue_length(azurite, env["LEAD_QUEUE_NAME"] + "-poison") == 0
