"""End to end through the local Functions host with the real Azure Monitor exporter, pointed
(`IngestionEndpoint=`) at a local stand-in for the ingestion service; then every query under
infra/monitoring/queries/ is checked against the names that really arrived. The run also pauses the
pipeline once and has a person qualify a lead, so the pause's and the CRM outcomes' names arrive too."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg2
import pytest

from local import services
from local.emulators.control_client import EmulatorControl
from local.services import REPO
from shared.observability import telemetry as names
from tests.app.helpers import lead, post_leads, sync_rows, wait_for
from tests.conftest import APP_SETTINGS, IDENTITY_HEADER, WEBHOOK_SECRET
from tests.telemetry.emitted import Emitted, emitted
from tests.telemetry.ingestion import Ingestion
from tests.telemetry.kql_names import unknown_names

QUERIES = REPO / "infra" / "monitoring" / "queries"
NAMES_FILE = REPO / ".local" / "telemetry" / "emitted-names.json"
SYNCED, REFUSED, PAUSED = [7301, 7302], 7303, 7304
# The application user loses its create privilege while one lead is pushed: an org-level failure, a pause.
NO_CREATE = {
    "status": 403,
    "code": "0x80040220",
    "methods": ["PATCH", "POST"],
    "message": "Principal user (Id=5a5e0000-0000-4000-8000-00000000a001, type=8), is missing prvCreateLead privilege",
}
METRICS = {
    names.LEADS_ACCEPTED,
    names.PUSH_OUTCOMES,
    names.PUSH_DURATION,
    names.DATAVERSE_REQUESTS,
    names.QUEUE_DEPTH,
    names.LEADS_BY_STATUS,
    names.PIPELINE_PAUSED,
    names.LEADS_BY_CRM_STATE,
}


@dataclass(frozen=True)
class Run:
    ingestion: Ingestion
    emulator: EmulatorControl
    env: dict[str, str]
    correlation_id: str
    host: services.ManagedProcess

    def names(self) -> Emitted:
        return emitted(self.ingestion.snapshot())


@pytest.fixture(scope="module")
def run(azurite, database_url, identity) -> Iterator[Run]:
    """Two leads synced and one Dataverse refuses, through a host that exports with the distro; then a person
    qualifies a synced lead, and a lost privilege pauses the pipeline for a fourth lead until it is given back."""
    ingestion = Ingestion()
    dataverse = services.start_dataverse_emulator(profile="mvp")
    emulator = EmulatorControl(dataverse.url, dataverse)
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "DATABASE_URL": database_url,
        "D365_BULK_SIZE": "1",  # the session database holds other tests' leads
        "LEAD_QUEUE_NAME": f"leads-{secrets.token_hex(4)}",
        "CRM_OUTCOME_SCHEDULE": "*/2 * * * * *",
        # longer than the fixture takes to give the privilege back once the pause has opened
        "D365_PAUSE_PROBE_SECONDS": "3",
        "HUNTER_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "D365_URL": dataverse.url,
        "D365_AUTH_MODE": "managed_identity",
        "IDENTITY_ENDPOINT": identity.endpoint,
        "IDENTITY_HEADER": IDENTITY_HEADER,
        "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string(),
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_BLRP_SCHEDULE_DELAY": "200",
        # As the app settings recommend: every trace whole (the distro's default rate limit drops most of a burst).
        "OTEL_TRACES_SAMPLER": "microsoft.fixed_percentage",
        "OTEL_TRACES_SAMPLER_ARG": "1.0",
    }
    base = {
        name: value for name, value in os.environ.items() if name not in APP_SETTINGS and not name.startswith("OTEL_")
    }
    host = services.start_funchost(services.free_port(), env={**base, **env})
    try:
        emulator.control(
            "POST",
            "rules",
            json={
                "column": "companyname",
                "equals": f"company{REFUSED}",
                "status": 400,
                "code": "0x80040265",
                "message": "Plug-in rejected the record",
            },
        )
        response = post_leads(host.url, {"leads": [lead(i) for i in (*SYNCED, REFUSED)]}, secret=WEBHOOK_SECRET)
        assert response.status_code == 202, response.text
        wait_for(
            lambda: (
                {r["status"] for r in sync_rows(database_url, [*SYNCED, REFUSED]).values()} == {"synced", "failed"}
                and len(sync_rows(database_url, [*SYNCED, REFUSED])) == 3
            ),
            what="all three leads pushed",
        )
        result = Run(ingestion, emulator, env, response.json()["correlation_id"], host)
        emulator.qualify_lead(str(sync_rows(database_url, [SYNCED[0]])[SYNCED[0]]["d365_lead_id"]))
        emulator.set_faults(every=NO_CREATE)
        assert post_leads(host.url, {"leads": [lead(PAUSED)]}, secret=WEBHOOK_SECRET).status_code == 202
        wait_for(lambda: _events(result, "pipeline_paused"), what="the pause opened")
        emulator.clear_faults()
        wait_for(lambda: sync_rows(database_url, [PAUSED]).get(PAUSED, {}).get("status") == "synced", what="resumed")
        # Exported every second (OTEL_METRIC_EXPORT_INTERVAL); spans and logs in batches of 200 ms. The queue,
        # status and pause gauges come from the metrics timer, which runs at the start of each minute (not on
        # start-up); the CRM states from the outcome reader, every 2 s here.
        wait_for(
            lambda: (
                set(result.names().metrics) >= METRICS
                and _push_requests(result)
                and _events(result, "pipeline_resumed")
                and any(p.get("crm_state") == "qualified" for p in _events(result, "crm_outcome"))
            ),
            timeout=75,
            what="the custom metrics, both push requests, the pause lifted and the qualified lead's outcome",
        )
        NAMES_FILE.parent.mkdir(parents=True, exist_ok=True)
        NAMES_FILE.write_text(json.dumps(result.names().to_json(), indent=1) + "\n")
        yield result
    except BaseException:
        print(host.log_tail(60))
        print("metrics:", sorted(emitted(ingestion.snapshot()).metrics))
        print("requests:", [(r.get("name"), r.get("properties")) for r in ingestion.by_table("requests")])
        raise
    finally:
        host.stop()
        _forget_pause(database_url)
        emulator.close()
        ingestion.close()


def _push_requests(run: Run) -> list[dict[str, Any]]:
    return [
        r
        for r in run.ingestion.by_table("requests")
        if r.get("name") == names.PUSH_SPAN and r.get("properties", {}).get("company_id") in {str(i) for i in SYNCED}
    ]


def _events(run: Run, event: str) -> list[dict[str, Any]]:
    """The customDimensions of every trace of `event` that reached the ingestion endpoint."""
    return [t["properties"] for t in run.ingestion.by_table("traces") if t["properties"].get("event") == event]


def _forget_pause(database_url: str) -> None:
    """The session database is shared: a pause left by a failed run is not the next test's."""
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM pipeline_pause")
    conn.close()


def _envelopes(run: Run, table: str) -> list[dict[str, Any]]:
    base_type = {"requests": "RequestData", "dependencies": "RemoteDependencyData"}[table]
    return [e for e in run.ingestion.snapshot() if e["data"]["baseType"] == base_type]


def _pushes(run: Run, company_ids: set[int]) -> list[dict[str, Any]]:
    return [
        e
        for e in _envelopes(run, "requests")
        if e["data"]["baseData"]["name"] == names.PUSH_SPAN
        and int(e["data"]["baseData"]["properties"].get("company_id") or 0) in company_ids
    ]


def test_requests_and_dependencies_form_one_operation(run):
    webhooks = [e for e in _envelopes(run, "requests") if e["data"]["baseData"]["name"] == "POST /api/leads"]
    # the first post, then the paused lead's
    assert [e["data"]["baseData"]["responseCode"] for e in webhooks] == ["202", "202"]
    pushes = _pushes(run, {*SYNCED, REFUSED})
    assert sorted(int(e["data"]["baseData"]["properties"]["company_id"]) for e in pushes) == [*SYNCED, REFUSED]
    (operation,) = {e["tags"]["ai.operation.id"] for e in pushes}
    assert operation in {e["tags"]["ai.operation.id"] for e in webhooks}
    assert {e["data"]["baseData"]["properties"]["correlation_id"] for e in pushes} == {run.correlation_id}
    push_ids = {e["data"]["baseData"]["id"] for e in pushes}
    paused_operations = {e["tags"]["ai.operation.id"] for e in _pushes(run, {PAUSED})}
    writes = [
        e
        for e in _envelopes(run, "dependencies")
        if e["data"]["baseData"]["name"].startswith("PATCH /api/data/")
        and e["tags"]["ai.operation.id"] not in paused_operations
    ]
    assert len(writes) >= 3 and {e["tags"]["ai.operation.id"] for e in writes} == {operation}
    assert {e["tags"]["ai.operation.parentId"] for e in writes} <= push_ids
    assert {e["data"]["baseData"]["resultCode"] for e in writes} >= {"400"}


def test_traces_carry_the_context_as_custom_dimensions(run):
    traces = run.ingestion.by_table("traces")
    success = [
        t["properties"]
        for t in traces
        if t["properties"].get("event") == "d365_push_success" and int(t["properties"]["company_id"]) in SYNCED
    ]
    assert sorted(int(p["company_id"]) for p in success) == SYNCED
    assert all(
        p["correlation_id"] == run.correlation_id
        and p["dequeue_count"] == "1"
        and p["d365_lead_id"]
        and float(p["duration_ms"]) > 0
        for p in success
    )
    failed = [t["properties"] for t in traces if t["properties"].get("event") == "d365_push_failed"]
    assert [(p["company_id"], p["http_status"], p["error_code"]) for p in failed] == [
        (str(REFUSED), "400", "0x80040265")
    ]
    assert failed[0]["service_request_id"]
    assert "it@company" not in json.dumps(traces)  # contact addresses never leave the app


def test_custom_metrics_arrive_with_their_dimensions(run):
    metrics = run.names().metrics
    assert set(metrics) >= METRICS
    assert metrics[names.PUSH_OUTCOMES] == {"outcome"} and metrics[names.PUSH_DURATION] == {"outcome"}
    assert metrics[names.DATAVERSE_REQUESTS] == {"kind", "status_code"}
    assert metrics[names.QUEUE_DEPTH] == {"queue"} and metrics[names.LEADS_BY_STATUS] == {"status"}
    assert metrics[names.PIPELINE_PAUSED] == {"reason"} and metrics[names.LEADS_BY_CRM_STATE] == {"crm_state"}
    outcomes: dict[str, float] = {}
    for base in run.ingestion.by_table("customMetrics"):
        metric = base["metrics"][0]
        if metric["name"] == names.PUSH_OUTCOMES:
            outcome = base["properties"]["outcome"]
            outcomes[outcome] = outcomes.get(outcome, 0) + metric["value"]
    assert outcomes.pop("paused") >= 1  # the paused lead's first push, and any probe before the fix
    assert outcomes == {"created": 3, "failed": 1}


def test_the_pause_and_the_crm_outcomes_arrive_as_traces_with_their_dimensions(run):
    paused = _events(run, "pipeline_paused")
    assert [(p["pause_reason"], p["company_id"], p["error_code"]) for p in paused[:1]] == [
        ("privilege", str(PAUSED), "0x80040220")
    ]
    assert [p["pause_reason"] for p in _events(run, "pipeline_resumed")] == ["privilege"]
    outcomes = {p["company_id"]: (p["crm_state"], p["crm_status_code"]) for p in _events(run, "crm_outcome")}
    assert outcomes[str(SYNCED[0])] == ("qualified", "3")
    pushed = {p["company_id"]: p for p in _events(run, "d365_push_success")}
    # the sample lead: segment "Existing", readiness score 90
    assert {(pushed[str(i)]["segment"], pushed[str(i)]["score_band"]) for i in SYNCED} == {("Existing", "80-100")}


def test_monitoring_queries_name_only_what_the_app_emits(run):
    queries = sorted(QUERIES.glob("*.kql"))
    assert queries, f"no KQL queries under {QUERIES.relative_to(REPO)}"
    seen = run.names()
    problems = [
        f"{path.relative_to(REPO)}: {problem}" for path in queries for problem in unknown_names(path.read_text(), seen)
    ]
    assert not problems, "\n".join(problems)


def test_the_query_check_names_what_is_never_emitted(run):
    query = """customMetrics | where name == "leadpush.push.outcome" | where user_Id != ""
    | extend q = tostring(customDimensions.outcomes) | union AppTraces | union pageViews"""

    assert unknown_names(query, run.names()) == [
        "workspace table names ['AppTraces']; use the classic ones",
        "table pageViews receives nothing from the app",
        "column user_Id is not filled in ['customMetrics']",
        "customDimensions.outcomes is never sent to ['customMetrics']",
        "metric leadpush.push.outcome is never sent",
    ]
