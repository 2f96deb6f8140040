"""Traces, metrics and log dimensions, read from in-memory OpenTelemetry exporters while the local
host runs the app in this process against Azurite, PostgreSQL and the Dataverse emulator."""

from __future__ import annotations

from datetime import UTC, datetime

import azure.functions as func
import psycopg2
from azure.functions.timer import TimerRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind

from blueprints import metrics as metrics_blueprint
from shared.observability import telemetry as names
from shared.runtime.container import Container
from shared.runtime.settings import Settings
from tests.app.helpers import attempts, lead, post_leads, sync_rows, wait_for
from tests.conftest import WEBHOOK_SECRET


def _descends_from(span: ReadableSpan, ancestor: ReadableSpan, by_id: dict[int, ReadableSpan]) -> bool:
    while span.parent is not None:
        if span.parent.span_id == ancestor.context.span_id:
            return True
        parent = by_id.get(span.parent.span_id)
        if parent is None:
            return False
        span = parent
    return False


def test_one_trace_from_webhook_through_the_queue_to_dataverse(app_env, dataverse, in_process_host, telemetry):
    # given
    emulator = dataverse("mvp")
    host = in_process_host(app_env(emulator))
    ids = [7101, 7102]

    # when
    response = post_leads(host.url, {"leads": [lead(i) for i in ids]}, secret=WEBHOOK_SECRET)
    assert response.status_code == 202, response.text
    correlation_id = response.json()["correlation_id"]

    def pushes() -> list[ReadableSpan] | None:
        found = [
            s for s in telemetry.finished_spans() if s.name == names.PUSH_SPAN and s.attributes.get("company_id") in ids
        ]
        return found if len(found) == 2 else None

    push_spans = wait_for(pushes, what="both push spans")

    # then: the host's request span for the webhook roots one trace holding both pushes
    spans = telemetry.finished_spans()
    webhook = [s for s in spans if s.name == "POST /api/leads" and s.kind is SpanKind.SERVER]
    assert len(webhook) == 1
    trace_id = webhook[0].context.trace_id
    by_id = {s.context.span_id: s for s in spans if s.context.trace_id == trace_id}
    assert {s.context.trace_id for s in push_spans} == {trace_id}
    assert sorted(s.attributes["company_id"] for s in push_spans) == ids
    for push in push_spans:
        assert push.kind is SpanKind.CONSUMER
        assert push.attributes["correlation_id"] == correlation_id
        assert push.attributes["outcome"] == "created"
        assert _descends_from(push, webhook[0], by_id)
        # linked to the span the host started for this delivery (a trace of its own)
        assert [link.context.trace_id != trace_id for link in push.links] == [True]
        inside = [s for s in spans if s.context.trace_id == trace_id and _descends_from(s, push, by_id)]
        dataverse_calls = [
            s
            for s in inside
            if s.kind is SpanKind.CLIENT
            and str(s.attributes.get("url.full", s.attributes.get("http.url", ""))).startswith(emulator.url)
        ]
        assert any(
            s.attributes.get("http.request.method", s.attributes.get("http.method")) == "PATCH" for s in dataverse_calls
        ), [s.name for s in inside]

    # and every event logged inside the trace carries its dimensions
    in_trace = [r.log_record for r in telemetry.log_records() if r.log_record.trace_id == trace_id]
    events = {r.attributes.get("event"): r.attributes for r in in_trace if r.attributes.get("event")}
    assert "webhook_leads_queued" in events and events["webhook_leads_queued"]["correlation_id"] == correlation_id
    successes = [r.attributes for r in in_trace if r.attributes.get("event") == "d365_push_success"]
    assert sorted(a["company_id"] for a in successes) == ids
    for fields in successes:
        assert fields["correlation_id"] == correlation_id
        assert isinstance(fields["duration_ms"], float) and fields["dequeue_count"] == 1
        assert fields["d365_lead_id"] in {r["leadid"] for r in emulator.leads()}


def test_postgresql_statements_nest_in_the_push_span(app_env, dataverse, in_process_host, telemetry):
    # given
    host = in_process_host(app_env(dataverse("mvp")))

    # when
    assert post_leads(host.url, lead(7111), secret=WEBHOOK_SECRET).status_code == 202
    push = wait_for(
        lambda: next(
            (
                s
                for s in telemetry.finished_spans()
                if s.name == names.PUSH_SPAN and s.attributes.get("company_id") == 7111
            ),
            None,
        ),
        what="the push span",
    )

    # then
    spans = telemetry.finished_spans()
    by_id = {s.context.span_id: s for s in spans if s.context.trace_id == push.context.trace_id}
    statements = [
        s for s in by_id.values() if s.attributes.get("db.system") == "postgresql" and _descends_from(s, push, by_id)
    ]
    # The psycopg2 instrumentation traces only cursors whose factory was set on the connection
    # (psycopg2.connect(cursor_factory=...)), not conn.cursor(cursor_factory=...).
    assert statements, "no PostgreSQL span inside push_lead"
    assert all(s.kind is SpanKind.CLIENT for s in statements)


def test_counters_and_histogram_move_by_outcome(app_env, dataverse, in_process_host, telemetry, database_url):
    # given a host, one lead already synced and a rule that makes Dataverse refuse another
    emulator = dataverse("mvp")
    host = in_process_host(app_env(emulator))
    emulator.control(
        "POST",
        "rules",
        json={
            "column": "companyname",
            "equals": "company7203",
            "status": 400,
            "code": "0x80040265",
            "message": "Plug-in rejected the record",
        },
    )
    before_outcomes = telemetry.counts(names.PUSH_OUTCOMES, "outcome")
    before_durations = telemetry.counts(names.PUSH_DURATION, "outcome")
    before_accepted = sum(p.value for p in telemetry.points(names.LEADS_ACCEPTED))
    before_requests = telemetry.counts(names.DATAVERSE_REQUESTS, "status_code")

    # when: two new leads (created), one refused (failed), then the first again, newer but the same (unchanged)
    assert (
        post_leads(host.url, {"leads": [lead(7201), lead(7202), lead(7203)]}, secret=WEBHOOK_SECRET).status_code == 202
    )
    wait_for(
        lambda: len([a for i in (7201, 7202, 7203) for a in attempts(database_url, i)]) == 3, what="three attempts"
    )
    later = lead(7201, updated_at=datetime.now(UTC).isoformat())
    assert post_leads(host.url, later, secret=WEBHOOK_SECRET).status_code == 202
    wait_for(lambda: len(attempts(database_url, 7201)) == 2, what="the second attempt at 7201")
    wait_for(
        lambda: sum(telemetry.counts(names.PUSH_OUTCOMES, "outcome").values()) - sum(before_outcomes.values()) == 4,
        what="four pushes counted",
    )

    # then
    outcomes = _delta(before_outcomes, telemetry.counts(names.PUSH_OUTCOMES, "outcome"))
    assert outcomes == {"created": 2, "failed": 1, "unchanged": 1}
    assert _delta(before_durations, telemetry.counts(names.PUSH_DURATION, "outcome")) == outcomes
    assert sum(p.value for p in telemetry.points(names.LEADS_ACCEPTED)) - before_accepted == 4
    requests_by_status = _delta(before_requests, telemetry.counts(names.DATAVERSE_REQUESTS, "status_code"))
    assert requests_by_status.pop("400") == 1
    assert requests_by_status and all(200 <= int(status) < 300 for status in requests_by_status), requests_by_status
    assert sync_rows(database_url, [7203])[7203]["status"] == "failed"
    failed = [
        r.log_record.attributes
        for r in telemetry.log_records()
        if r.log_record.attributes.get("event") == "d365_push_failed"
    ]
    assert len(failed) == 1
    assert {
        key: failed[0].get(key) for key in ("company_id", "outcome", "http_status", "error_code", "dequeue_count")
    } == {"company_id": 7203, "outcome": "failed", "http_status": 400, "error_code": "0x80040265", "dequeue_count": 1}
    assert failed[0]["correlation_id"] and failed[0]["service_request_id"]


def test_gauges_report_queue_depths_and_leads_by_status(app_env, dataverse, azurite, database_url, telemetry):
    # given a queue no host serves, holding three messages, and two in its poison queue
    env = app_env(dataverse("mvp"))
    container = Container(Settings.from_env(env))
    main, poison = (azurite.queue_client(env["LEAD_QUEUE_NAME"] + suffix) for suffix in ("", "-poison"))
    for client, count in ((main, 3), (poison, 2)):
        client.create_queue()
        for n in range(count):
            client.send_message(f"message {n}")
    read_metrics = _function(metrics_blueprint.blueprint(container), "read_metrics")

    # when the timer fires
    read_metrics(TimerRequest(past_due=False))

    # then
    depths = {p.attributes["queue"]: p.value for p in telemetry.points(names.QUEUE_DEPTH)}
    assert depths == {env["LEAD_QUEUE_NAME"]: 3, env["LEAD_QUEUE_NAME"] + "-poison": 2}
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("SELECT status, count(*) FROM lead_sync GROUP BY status")
        expected = {status: 0 for status in names.STATUSES} | dict(cur.fetchall())
    conn.close()
    assert {p.attributes["status"]: p.value for p in telemetry.points(names.LEADS_BY_STATUS)} == expected
    container.store.close()


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before.get(key, 0) for key in after if after[key] - before.get(key, 0)}


def _function(blueprint: func.Blueprint, name: str):
    app = func.FunctionApp()
    app.register_functions(blueprint)
    return next(f for f in app.get_functions() if f.get_function_name() == name).get_user_function()
