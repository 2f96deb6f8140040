"""Service protection limits per user (docs/dataverse.md 6): requests and execution time per window, concurrency."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PowerPlatform.Dataverse.client import DataverseClient
from PowerPlatform.Dataverse.core.errors import HttpError

from local.emulators import tokens
from local.emulators.control_client import EmulatorControl
from local.emulators.dataverse import DataverseServer
from local.emulators.dataverse.protection import Limits, ServiceProtection
from local.services import start_module
from tests.emulators.conftest import Api, error_of
from tests.emulators.test_dataverse_batch import sdk_client, sdk_server, sdk_tls  # noqa: F401 - fixtures

LEAD = "Microsoft.Dynamics.CRM.lead"


def protect(api: Api, **limits: object) -> dict:
    response = api.control("POST", "protection", limits)
    assert response.status_code == 200, response.text
    return response.json()


def throttled(api: Api) -> dict[str, int]:
    return api.control("GET", "stats").json()["throttled"]


def test_requests_over_the_window_limit_get_429_with_retry_after(api: Api) -> None:
    protect(api, requests_per_window=3, window_seconds=60)

    statuses = [api.get("WhoAmI").status_code for _ in range(3)]
    refused = api.get("WhoAmI")

    assert statuses == [200, 200, 200]
    assert error_of(refused) == (429, "0x80072322",
                                 "Number of requests exceeded the limit of 3 over time window of 60 seconds.")
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert refused.headers["x-ms-dop-hint"]
    assert throttled(api) == {"requests": 1, "execution_time": 0, "concurrency": 0}


def test_limits_count_per_user(api: Api) -> None:
    protect(api, requests_per_window=1, window_seconds=60)
    other, _ = tokens.mint(api.server.resource, subject="other", app_id="other-app", ttl_seconds=600)

    assert api.get("WhoAmI").status_code == 200
    assert api.get("WhoAmI").status_code == 429
    assert api.get("WhoAmI", headers={"Authorization": f"Bearer {other}"}).status_code == 200


def test_a_batch_counts_as_one_request(api: Api) -> None:
    protect(api, requests_per_window=2, window_seconds=60)
    part = "Content-Type: application/http\r\nContent-Transfer-Encoding: binary\r\n\r\nGET WhoAmI HTTP/1.1\r\n\r\n"
    body = "".join(f"--b\r\n{part}\r\n" for _ in range(5)) + "--b--\r\n"

    batch = api.post("$batch", data=body.encode(), headers={"Content-Type": "multipart/mixed; boundary=b"})

    assert batch.status_code == 200
    assert api.get("WhoAmI").status_code == 200
    assert error_of(api.get("WhoAmI"))[:2] == (429, "0x80072322")


def test_execution_time_counts_every_record_of_a_bulk_request(api: Api) -> None:
    protect(api, execution_ms_per_window=100, execution_ms_per_record=30, window_seconds=60)
    targets = [{"@odata.type": LEAD, "leadid": str(uuid.uuid4()), "subject": str(n)} for n in range(4)]

    written = api.post("leads/Microsoft.Dynamics.CRM.UpsertMultiple", json={"Targets": targets})
    refused = api.get("WhoAmI")

    assert written.status_code == 204
    status, code, message = error_of(refused)
    assert (status, code) == (429, "0x80072321")
    assert message.startswith("Combined execution time of incoming requests exceeded limit of 100  milliseconds "
                              "over time window of 60 seconds.")
    assert int(refused.headers["Retry-After"]) >= 1
    assert throttled(api)["execution_time"] == 1


def test_the_execution_limit_trips_only_after_it_is_exceeded(api: Api) -> None:
    protect(api, execution_ms_per_window=100, execution_ms_per_record=60, window_seconds=60)

    assert api.get("WhoAmI").status_code == 200  # 60 ms of 100: under
    assert api.get("WhoAmI").status_code == 200  # still admitted; now over
    assert error_of(api.get("WhoAmI"))[:2] == (429, "0x80072321")


def test_concurrent_requests_over_the_limit_are_refused_at_once(api: Api) -> None:
    protect(api, max_concurrent=1)
    api.control("POST", "faults", {"latency_ms": 1000})

    with ThreadPoolExecutor(3) as pool:
        responses = list(pool.map(lambda _: api.request("GET", "WhoAmI"), range(3)))

    refused = [r for r in responses if r.status_code == 429]
    assert [r.status_code for r in responses].count(200) >= 1 and refused
    expected = ("0x80072326", "Number of concurrent requests exceeded the limit of 1.")
    assert {error_of(r)[1:] for r in refused} == {expected}
    assert all(r.headers["Retry-After"] == "1" for r in refused)
    assert throttled(api)["concurrency"] == len(refused)


def test_control_api_configures_clears_and_reset_restores(api: Api) -> None:
    assert api.control("GET", "protection").json()["enabled"] is False

    configured = protect(api, requests_per_window=600, window_seconds=30, max_concurrent=8)

    assert configured == {"requests_per_window": 600, "execution_ms_per_window": 0, "max_concurrent": 8,
                          "window_seconds": 30.0, "execution_ms_per_record": 0.0, "enabled": True}
    assert api.control("POST", "protection", {"requests_per_window": -1}).status_code == 400
    assert api.control("POST", "protection", {"window_seconds": 0}).status_code == 400
    assert api.control("POST", "protection", {"nonsense": 1}).status_code == 400
    assert api.control("DELETE", "protection").status_code == 204
    assert api.control("GET", "protection").json()["enabled"] is False
    protect(api, requests_per_window=1)
    api.control("POST", "reset")
    assert api.control("GET", "protection").json()["enabled"] is False


def test_a_slot_is_freed_when_the_request_ends() -> None:
    protection = ServiceProtection(Limits(max_concurrent=1))

    assert protection.admit("u") is None
    refusal = protection.admit("u")
    protection.release("u", 1.0)

    assert refusal is not None and refusal.limit == "concurrency"
    assert protection.admit("u") is None


@pytest.mark.parametrize("limits", [{"max_concurrent": 1.5}, {"requests_per_window": True}, {"window_seconds": "1"}])
def test_limits_must_be_numbers(limits: dict) -> None:
    with pytest.raises(ValueError):
        Limits.from_dict(limits)


def test_command_line_flags_set_the_state_reset_returns_to() -> None:
    process = start_module(
        "local.emulators.dataverse", "--host", "127.0.0.1", "--port", "0", "--no-bulk",
        "--requests-per-window", "600", "--window-seconds", "30", "--max-concurrent", "8", name="dataverse-flags",
    )
    control = EmulatorControl(process.url, process)
    try:
        control.set_bulk_support(True)
        control.clear_protection()
        control.reset()

        assert control.control("GET", "bulk") == {"supported": False}
        protection = control.control("GET", "protection")
        assert (protection["requests_per_window"], protection["window_seconds"], protection["max_concurrent"]) == (
            600, 30.0, 8)
    finally:
        control.close()


def test_microsofts_client_reads_the_throttle_answer(
    sdk_client: DataverseClient, sdk_server: DataverseServer  # noqa: F811 - the fixtures imported above
) -> None:
    sdk_client.records.create("lead", {"subject": "warms the client's metadata cache"})
    requests.post(f"{sdk_server.url}/_emulator/protection", json={"requests_per_window": 1, "window_seconds": 60},
                  timeout=5)

    with pytest.raises(HttpError) as raised:
        for n in range(2):
            sdk_client.records.create("lead", {"subject": str(n)})

    error = raised.value
    assert (error.status_code, error.details["service_error_code"], error.is_transient) == (429, "0x80072322", True)
    assert 1 <= error.details["retry_after"] <= 60
