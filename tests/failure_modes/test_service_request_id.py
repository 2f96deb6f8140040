"""Issue 8: the `x-ms-service-request-id` of a failed Dataverse answer, the id Microsoft support asks
for, is kept on the attempt row and written in the failure's log line."""

from __future__ import annotations

import re

import pytest

from tests.app.helpers import attempts, lead, wait_for
from tests.failure_modes.support import fresh, post, wait_statuses

GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.mark.parametrize("failure", ["rejected_write", "metadata_outage"])
def test_the_service_request_id_of_a_failed_answer_is_stored_and_logged(
    app_env, dataverse, local_host, database_url, failure
):
    c = 8800 if failure == "rejected_write" else 8801
    fresh(database_url, c)
    emulator = dataverse("mvp")
    host = local_host(app_env(emulator))
    if failure == "rejected_write":
        emulator.control(
            "POST",
            "rules",
            json={
                "column": "companyname",
                "equals": f"company{c}",
                "status": 400,
                "code": "0x80040265",
                "message": "Plug-in rejected the lead",
            },
        )
        status, event = "failed", "d365_push_failed"
    else:
        emulator.set_faults(every={"status": 503})
        status, event = "error", "d365_push_error"

    assert post(host, lead(c)).status_code == 202

    wait_statuses(database_url, {c: status}, timeout=30)
    attempt = attempts(database_url, c)[0]
    request_id = attempt["service_request_id"]
    assert request_id and GUID.match(request_id), f"the failed answer's x-ms-service-request-id: {attempt}"
    line = wait_for(
        lambda: next(
            (text for text in host.log_path.read_text().splitlines() if event in text and f"company_id={c}" in text),
            None,
        ),
        timeout=10,
        what=f"the {event} log line",
    )
    assert request_id in line, line
