"""The webhook and the read endpoints, over HTTP on the local host."""
from __future__ import annotations

import json
import time

import pytest
import requests

from shared.intake import sign
from tests.app.helpers import COMPANY_86, lead, post_leads, queue_length, sync_rows
from tests.conftest import WEBHOOK_SECRET


@pytest.fixture
def host(app_env, dataverse, local_host):
    return local_host(app_env(dataverse("mvp")))


def _post_raw(host, raw: bytes, headers: dict[str, str]) -> requests.Response:
    return requests.post(f"{host.url}/api/leads", data=raw, timeout=30, headers=headers)


@pytest.mark.parametrize("case, headers", [
    ("missing", {}),
    ("wrong", {"X-Hunter-Signature": "sha256=" + "0" * 64}),
    ("other secret", sign(json.dumps(COMPANY_86).encode(), "not-the-secret")),
    ("stale timestamp", sign(json.dumps(COMPANY_86).encode(), WEBHOOK_SECRET, timestamp=int(time.time()) - 3600)),
])
def test_unsigned_or_badly_signed_calls_are_refused_and_queue_nothing(host, azurite, case, headers):
    raw = json.dumps(COMPANY_86).encode()

    response = _post_raw(host, raw, {"Content-Type": "application/json", **headers})

    assert response.status_code == 401, case
    assert "Traceback" not in response.text and WEBHOOK_SECRET not in response.text
    assert queue_length(azurite, host.env["LEAD_QUEUE_NAME"]) == 0


def test_fresh_timestamped_signature_is_accepted(host):
    raw = json.dumps(lead(501)).encode()
    headers = {"Content-Type": "application/json", **sign(raw, WEBHOOK_SECRET, timestamp=int(time.time()))}

    assert _post_raw(host, raw, headers).status_code == 202


def test_replayed_delivery_id_answers_the_same_and_queues_once(host, azurite, database_url):
    body = {"leads": [lead(502), lead(503)]}
    first = post_leads(host.url, body, secret=WEBHOOK_SECRET, headers={"X-Hunter-Delivery": "delivery-502"})
    again = post_leads(host.url, body, secret=WEBHOOK_SECRET, headers={"X-Hunter-Delivery": "delivery-502"})

    assert first.status_code == again.status_code == 202
    assert again.json()["correlation_id"] == first.json()["correlation_id"]
    assert again.json()["duplicate_delivery"] is True


@pytest.mark.parametrize("body, field", [
    ({"domain": "x.example"}, "company_id"),
    ({"company_id": 5}, "domain"),
    ({"company_id": "five", "domain": "x.example"}, "company_id"),
    ({"leads": [lead(504), {"company_id": 505, "domain": "http://bad/"}]}, "leads[1].domain"),
])
def test_invalid_lead_is_refused_with_the_field_named_and_nothing_queued(host, azurite, database_url, body, field):
    response = post_leads(host.url, body, secret=WEBHOOK_SECRET)

    assert response.status_code == 400
    assert field in [p["field"] for p in response.json()["problems"]]
    assert queue_length(azurite, host.env["LEAD_QUEUE_NAME"]) == 0
    assert 504 not in sync_rows(database_url, [504])


def test_malformed_json_is_refused(host):
    raw = b'{"company_id": 86, "domain": '
    response = _post_raw(host, raw, {"Content-Type": "application/json", **sign(raw, WEBHOOK_SECRET)})

    assert response.status_code == 400
    assert response.json()["problems"]


def test_unknown_lead_status_is_404_and_health_is_ok(host):
    assert requests.get(f"{host.url}/api/leads/987654", timeout=10).status_code == 404
    health = requests.get(f"{host.url}/api/health", timeout=10)
    assert health.status_code == 200
    assert health.json()["checks"] == {"database": "ok", "queue": "ok"}


def test_health_names_the_failing_part(app_env, dataverse, local_host):
    host = local_host(app_env(dataverse("mvp"), DATABASE_URL="postgresql://postgres@127.0.0.1:1/nowhere"))

    health = requests.get(f"{host.url}/api/health", timeout=30)

    assert health.status_code == 503
    assert health.json()["checks"]["queue"] == "ok"
    assert health.json()["checks"]["database"] == "unavailable"
    assert "5432" not in health.text and "nowhere" not in health.text


def test_openapi_description_is_served(host):
    response = requests.get(f"{host.url}/api/openapi.yaml", timeout=10)

    assert response.status_code == 200
    assert response.text.startswith("openapi: 3")


@pytest.mark.parametrize("raw, content_type, status", [
    (b'{"company_id": 1, "domain": "a.example", "pad": "' + b"x" * (1024 * 1024) + b'"}', "application/json", 413),
    (json.dumps(COMPANY_86).encode(), "text/plain", 415),
    (json.dumps({"leads": [lead(600 + i) for i in range(501)]}).encode(), "application/json", 400),
], ids=["over 1 MiB", "text/plain", "501 leads"])
def test_limits_are_enforced_over_http(host, azurite, raw, content_type, status):
    response = _post_raw(host, raw, {"Content-Type": content_type, **sign(raw, WEBHOOK_SECRET)})

    assert response.status_code == status
    assert response.json()["problems"]
    assert queue_length(azurite, host.env["LEAD_QUEUE_NAME"]) == 0
