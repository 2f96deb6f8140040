"""End to end through the local Functions host with the real Azure Monitor exporter, pointed
(`IngestionEndpoint=`) at a local stand-in for the ingestion service; then every query under
infra/monitoring/queries/ is checked against the names that really arrived."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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
SYNCED, REFUSED = [7301, 7302], 7303
METRICS = {
    names.LEADS_ACCEPTED,
    names.PUSH_OUTCOMES,
    names.PUSH_DURATION,
    names.DATAVERSE_REQUESTS,
    names.QUEUE_DEPTH,
    names.LEADS_BY_STATUS,
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
    """Two leads synced and one Dataverse refuses, through a host that exports with the distro."""
    ingestion = Ingestion()
    dataverse = services.start_dataverse_emulator(profile="mvp")
    emulator = EmulatorControl(dataverse.url, dataverse)
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "DATABASE_URL": database_url,
        "D365_BULK_SIZE": "1",  # the session database holds other tests' leads
        "LEAD_QUEUE_NAME": f"leads-{secrets.token_hex(4)}",
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
        # Exported every second (OTEL_METRIC_EXPORT_INTERVAL); spans and logs in batches of 200 ms. The gauges
        # come from the metrics timer, which runs at the start of each minute (not on start-up).
        wait_for(
            lambda: set(result.names().metrics) >= METRICS and _push_requests(result),
            timeout=75,
            what="the custom metrics and both push requests at the ingestion endpoint",
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
        emulator.close()
        ingestion.close()


def _push_requests(run: Run) -> list[dict[str, Any]]:
    return [
        r
        for r in run.ingestion.by_table("requests")
        if r.get("name") == names.PUSH_SPAN and r.get("properties", {}).get("company_id") in {str(i) for i in SYNCED}
    ]


def _envelopes(run: Run, table: str) -> list[dict[str, Any]]:
    base_type = {"requests": "RequestData", "dependencies": "RemoteDependencyData"}[table]
    return [e for e in run.ingestion.snapshot() if e["data"]["baseType"] == base_type]


def test_requests_and_dependencies_form_one_operation(run):
    webhook = [e for e in _envelopes(run, "requests") if e["data"]["baseData"]["name"] == "POST /api/leads"]
    assert len(webhook) == 1
    operation = webhook[0]["tags"]["ai.operation.id"]
    assert webhook[0]["data"]["baseData"]["responseCode"] == "202"
    pushes = [
        e
        for e in _envelopes(run, "requests")
        if e["data"]["baseData"]["name"] == names.PUSH_SPAN and e["data"]["baseData"]["properties"].get("company_id")
    ]
    assert sorted(int(e["data"]["baseData"]["properties"]["company_id"]) for e in pushes) == [*SYNCED, REFUSED]
    assert {e["tags"]["ai.operation.id"] for e in pushes} == {operation}
    assert {e["data"]["baseData"]["properties"]["correlation_id"] for e in pushes} == {run.correlation_id}
    push_ids = {e["data"]["baseData"]["id"] for e in pushes}
    writes = [
        e for e in _envelopes(run, "dependencies") if e["data"]["baseData"]["name"].startswith("PATCH /api/data/")
    ]
    assert len(writes) >= 3 and {e["tags"]["ai.operation.id"] for e in writes} == {operation}
    assert {e["tags"]["ai.operation.parentId"] for e in writes} <= push_ids
    assert {e["data"]["baseData"]["resultCode"] for e in writes} >= {"400"}


def test_traces_carry_the_context_as_custom_dimensions(run):
    traces = run.ingestion.by_table("traces")
    success = [t["properties"] for t in traces if t["properties"].get("event") == "d365_push_success"]
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
    outcomes: dict[str, float] = {}
    for base in run.ingestion.by_table("customMetrics"):
        metric = base["metrics"][0]
        if metric["name"] == names.PUSH_OUTCOMES:
            outcome = base["properties"]["outcome"]
            outcomes[outcome] = outcomes.get(outcome, 0) + metric["value"]
    assert outcomes == {"created": 2, "failed": 1}


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
