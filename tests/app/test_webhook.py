"""The webhook and the read endpoints, over HTTP on the local host."""
from __future__ import annotations

import base64
import json
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from azure.storage.queue import QueueClient

from shared.usecases.accept import accept_leads
from shared.intake import DeliveryConflict, body_digest, parse_leads, sign
from tests.app.helpers import COMPANY_86, lead, post_leads, queue_length, sync_rows
from tests.conftest import WEBHOOK_SECRET


@pytest.fixture
def host(app_env, dataverse, local_host):
    return local_host(app_env(dataverse("mvp")))


def company_ids(wire_texts: list[str]) -> list[int]:
    """The company each queue message is about (a v2 reference, or a v1 message carrying the lead)."""
    documents = [json.loads(base64.b64decode(text)) for text in wire_texts]
    return [d["company_id"] if "company_id" in d else d["lead"]["company_id"] for d in documents]


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
    assert again.json() == {**first.json(), "duplicate_delivery": True}


def test_reused_delivery_id_with_another_body_is_409_and_queues_nothing(host, azurite, database_url):
    # given a delivery accepted under an id
    headers = {"X-Hunter-Delivery": "delivery-510"}
    first = post_leads(host.url, {"leads": [lead(510)]}, secret=WEBHOOK_SECRET, headers=headers)
    assert first.status_code == 202

    # when Hunter reuses the id for other leads
    reused = post_leads(host.url, {"leads": [lead(511), lead(512)]}, secret=WEBHOOK_SECRET, headers=headers)

    # then it is told so, and none of the new leads is recorded or on the queue
    assert reused.status_code == 409
    assert reused.json()["error"] == "Conflict"
    [problem] = reused.json()["problems"]
    assert problem["field"] == "X-Hunter-Delivery" and "different body" in problem["reason"]
    assert sync_rows(database_url, [511, 512]) == {}
    queue = QueueClient.from_connection_string(azurite.connection_string, host.env["LEAD_QUEUE_NAME"])
    queued = [m.content for m in queue.peek_messages(max_messages=32)]
    assert not set(company_ids(queued)) & {511, 512}


@pytest.fixture
def in_process(pipeline, dataverse):
    """The webhook's use case against Azurite and PostgreSQL with no queue trigger draining the queue,
    so every message sent stays visible to peek: `(pipeline, post(leads, delivery_id) -> 202 body)`."""
    p = pipeline(dataverse("mvp"))
    p.container.queues.ensure()

    def post(leads: list[dict], delivery: str) -> dict:
        raw = json.dumps({"leads": leads}).encode()
        received_at = datetime.now(timezone.utc)
        return accept_leads(parse_leads(raw, "application/json", now=received_at), store=p.container.store,
                            queues=p.container.queues, received_at=received_at, delivery_id=delivery,
                            body_sha256=body_digest(raw))

    return p, post


def test_reused_delivery_id_queues_nothing_more_whatever_the_body(in_process):
    p, post = in_process
    # given one delivery of two leads
    first = post([lead(530), lead(531)], "delivery-530")
    assert len(p.main_texts()) == 2

    # when it is delivered again, then reused for another lead
    again = post([lead(530), lead(531)], "delivery-530")
    with pytest.raises(DeliveryConflict):
        post([lead(532)], "delivery-530")

    # then the repeat answers the first 202, and neither call queued anything
    assert again == {**first, "duplicate_delivery": True}
    assert "body_sha256" not in again
    assert sorted(company_ids(p.main_texts())) == [530, 531]


def test_delivery_remembered_before_bodies_were_hashed_is_still_replayed(in_process):
    p, post = in_process
    # given a delivery remembered by an earlier version of the app, without its body's hash
    earlier = {"correlation_id": "c0ffee", "company_ids": [540], "duplicate_delivery": False}
    p.container.store.claim_delivery("delivery-540", earlier)

    # when the id comes again
    again = post([lead(541)], "delivery-540")

    # then there is nothing to compare: it gets the first answer and nothing is queued
    assert again == {**earlier, "duplicate_delivery": True}
    assert p.main_texts() == []


@pytest.mark.parametrize("leads, field", [
    ([lead(520, updated_at="2099-01-01T00:00:00Z")], "leads[0].updated_at"),
    ([lead(521), lead(522, updated_at=(datetime.now(timezone.utc) + timedelta(days=2)).isoformat())],
     "leads[1].updated_at"),
], ids=["far future", "two days ahead, second in batch"])
def test_updated_at_more_than_a_day_ahead_is_400_and_queues_nothing(host, azurite, database_url, leads, field):
    response = post_leads(host.url, {"leads": leads}, secret=WEBHOOK_SECRET)

    assert response.status_code == 400
    assert [p["field"] for p in response.json()["problems"]] == [field]
    assert "ahead of the server's clock" in response.json()["problems"][0]["reason"]
    assert queue_length(azurite, host.env["LEAD_QUEUE_NAME"]) == 0
    assert sync_rows(database_url, [lead["company_id"] for lead in leads]) == {}


def test_updated_at_a_few_minutes_ahead_is_accepted(host, database_url):
    ahead = (datetime.now(timezone.utc) + timedelta(minutes=5)).isoformat()

    response = post_leads(host.url, lead(523, updated_at=ahead), secret=WEBHOOK_SECRET)

    assert response.status_code == 202
    assert 523 in sync_rows(database_url, [523])


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
    assert health.json()["checks"] == {"database": "ok", "queue": "ok", "dataverse": "ok", "settings": "ok"}


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
