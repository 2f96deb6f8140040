"""Injected faults: scripted and random 429/503 and dropped connections."""
from __future__ import annotations

import pytest
import requests

from tests.emulators.conftest import Api, error_of


def _script(api: Api, *steps: dict) -> None:
    assert api.control("POST", "faults", {"script": list(steps)}).status_code == 200


def test_scripted_429_then_503_then_success(api: Api) -> None:
    _script(api, {"status": 429, "retry_after": 2}, {"status": 503})

    throttled = api.post("leads", json={"subject": "a"})
    unavailable = api.post("leads", json={"subject": "a"})
    ok = api.post("leads", json={"subject": "a"})

    status, code, message = error_of(throttled)
    assert (status, code, throttled.headers["Retry-After"]) == (429, "0x80072322", "2")
    assert message.startswith("Number of requests exceeded the limit of 6000")
    assert error_of(unavailable)[0] == 503
    assert ok.status_code == 204
    assert len(api.records()) == 1
    assert api.control("GET", "stats").json()["status_counts"] == {"429": 1, "503": 1, "204": 1}


def test_drop_before_does_nothing_and_the_client_sees_a_connection_error(api: Api) -> None:
    _script(api, {"drop": "before"})

    with pytest.raises(requests.ConnectionError):
        api.post("leads", json={"subject": "lost"})

    assert api.records() == []
    assert api.post("leads", json={"subject": "kept"}).status_code == 204


def test_drop_after_commit_applies_the_write(api: Api) -> None:
    _script(api, {"drop": "after_commit"})

    with pytest.raises(requests.ConnectionError):
        api.patch("leads(hnt_domain='a.example')", json={"subject": "written"})

    assert [(r["hnt_domain"], r["subject"]) for r in api.records()] == [("a.example", "written")]
    assert api.control("GET", "stats").json()["status_counts"] == {"dropped": 1}


def test_faults_never_hit_the_control_api_and_can_be_cleared(api: Api) -> None:
    api.control("POST", "faults", {"server_error": 1.0})

    assert api.control("GET", "leads").status_code == 200
    assert api.get("WhoAmI").status_code == 503
    assert api.control("DELETE", "faults").status_code == 204
    assert api.get("WhoAmI").status_code == 200


def test_random_faults_follow_their_rates_and_seed(api: Api) -> None:
    def run() -> list[int]:
        api.control("POST", "faults", {"rate_limit": 0.3, "server_error": 0.2, "retry_after": 3, "seed": 7})
        return [api.get("WhoAmI").status_code for _ in range(100)]

    first, second = run(), run()

    assert first == second
    assert 15 <= first.count(429) <= 45 and 8 <= first.count(503) <= 32 and first.count(200) >= 30


def test_random_throttles_use_the_documented_codes(api: Api) -> None:
    api.control("POST", "faults", {"rate_limit": 1.0, "retry_after": 4, "seed": 1})

    responses = [api.get("WhoAmI") for _ in range(30)]

    assert {r.headers["Retry-After"] for r in responses} == {"4"}
    assert {error_of(r)[1] for r in responses} == {"0x80072322", "0x80072321", "0x80072326"}


@pytest.mark.parametrize(
    "config",
    [{"rate_limit": 2}, {"rate_limit": 0.6, "server_error": 0.6}, {"script": [{"status": 200}]},
     {"script": [{"drop": "sometimes"}]}],
)
def test_invalid_fault_configs_are_refused(api: Api, config: dict) -> None:
    assert api.control("POST", "faults", config).status_code == 400
