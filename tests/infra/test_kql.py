"""The alert and workbook queries (infra/monitoring/queries/*.kql) name only what the app emits: the tables,
columns, metric names, dimensions and events of /work/coord/DESIGN.md's telemetry contract, each of which the app's
code really uses. (Running them needs Application Insights; the telemetry tests check what the exporter sends.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.infra.bicep_model import INFRA, ROOT

QUERIES = sorted((INFRA / "monitoring" / "queries").glob("*.kql"))

TABLE_COLUMNS = {
    "customMetrics": {"timestamp", "name", "value", "valueCount", "valueSum", "customDimensions"},
    "traces": {"timestamp", "message", "customDimensions"},
}
METRICS = {
    "leadpush.webhook.leads_accepted",
    "leadpush.push.outcomes",
    "leadpush.push.duration",
    "leadpush.dataverse.requests",
    "leadpush.queue.depth",
    "leadpush.leads.by_status",
    "leadpush.pipeline.paused",
    "leadpush.leads.by_crm_state",
}
DIMENSIONS = {
    # metric attributes
    "outcome",
    "kind",
    "status_code",
    "queue",
    "status",
    "reason",
    "crm_state",
    # log record fields
    "event",
    "company_id",
    "correlation_id",
    "d365_lead_id",
    "duration_ms",
    "dequeue_count",
    "http_status",
    "error_code",
    "service_request_id",
    "retry_after",
    "pause_reason",
    "segment",
    "score_band",
}
OUTCOMES = {"created", "updated", "unchanged", "skipped", "deferred", "error", "failed", "leased"}
KQL_WORDS = {
    "let",
    "where",
    "extend",
    "project",
    "summarize",
    "by",
    "order",
    "desc",
    "asc",
    "and",
    "or",
    "not",
    "in",
    "endswith",
    "startswith",
    "contains",
    "has",
    "bin",
    "tostring",
    "toscalar",
    "sum",
    "sumif",
    "max",
    "min",
    "count",
    "countif",
    "round",
    "iff",
    "coalesce",
    "arg_min",
    "arg_max",
    "isnotempty",
    "isempty",
    "percentilesw",
    "avg",
    "join",
    "inner",
    "leftouter",
    "on",
    "union",
    "dcountif",
    "isnull",
    "datetime",
    "null",
}

APP_SOURCE = "\n".join(
    path.read_text() for folder in ("shared", "d365", "blueprints") for path in sorted((ROOT / folder).rglob("*.py"))
)


def _strip(kql: str) -> str:
    without_comments = re.sub(r"//[^\n]*", "", kql)
    return re.sub(r'"[^"]*"', '""', without_comments)


def _dimensions(kql: str) -> set[str]:
    """Keys read as customDimensions.key or customDimensions["key"] (for keywords such as `kind`)."""
    text = re.sub(r"//[^\n]*", "", kql)
    return {dotted or bracketed for dotted, bracketed in re.findall(r'customDimensions(?:\.(\w+)|\["(\w+)"\])', text)}


def _strings(kql: str) -> list[str]:
    return re.findall(r'"([^"]*)"', re.sub(r"//[^\n]*", "", kql))


@pytest.mark.parametrize("path", QUERIES, ids=lambda p: p.name)
def test_query_reads_only_emitted_tables_and_columns(path):
    code = _strip(path.read_text())
    tables = {word for word in re.findall(r"\b[A-Za-z]\w*\b", code) if word in TABLE_COLUMNS}
    dimensions = _dimensions(path.read_text())
    code_without_dimensions = re.sub(r"customDimensions\.\w+", "customDimensions", code)
    code_without_durations = re.sub(r"\b\d+(?:\.\d+)?[smhd]?\b", "", code_without_dimensions)
    words = set(re.findall(r"\b[A-Za-z_]\w*\b", code_without_durations))
    defined = set(re.findall(r"\b(\w+)\s*=(?!=)", code)) | set(re.findall(r"\blet\s+(\w+)", code))
    defined |= {name for pair in re.findall(r"\((\w+),\s*(\w+)\)\s*=", code) for name in pair}

    assert tables, "a query must read a table"
    columns = set().union(*(TABLE_COLUMNS[table] for table in tables))
    assert words - columns - set(TABLE_COLUMNS) - KQL_WORDS - defined == set()
    assert dimensions <= DIMENSIONS


@pytest.mark.parametrize("path", QUERIES, ids=lambda p: p.name)
def test_query_names_only_emitted_metrics_outcomes_and_events(path):
    literals = set(_strings(path.read_text()))
    metrics = {value for value in literals if value.startswith("leadpush.")}
    events = {value for value in literals if re.fullmatch(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+", value)}
    outcomes = literals & OUTCOMES

    assert metrics <= METRICS
    for name in metrics | outcomes:
        assert f'"{name}"' in APP_SOURCE, f"{name} appears nowhere in the app's code"
    for event in events:  # a log message starts with its event name
        assert re.search(rf'"{event}\b', APP_SOURCE), f"no log message starts with {event}"


def test_every_dimension_a_query_reads_is_set_by_the_app():
    used = set()
    for path in QUERIES:
        used |= _dimensions(path.read_text())

    assert used, "the queries read dimensions"
    for key in used - {"event"}:  # `event` is added to every record by the logging filter
        assert f'"{key}"' in APP_SOURCE, f"customDimensions.{key} is set nowhere in the app's code"


def test_failed_leads_panel_shows_the_reason_fields():
    text = (INFRA / "monitoring" / "queries" / "workbook-failed-leads.kql").read_text()

    assert 'customDimensions.event) == "d365_push_failed"' in text
    for column in ("company_id", "error_code", "service_request_id", "message"):
        assert re.search(rf"\b{column}\b", text)


@pytest.mark.parametrize(
    "name, needle",
    [
        ("alert-poison-queue.kql", 'endswith "-poison"'),
        ("alert-failed-share.kql", 'outcome == "failed"'),
        ("alert-queue-stalled.kql", '"leadpush.queue.depth"'),
        ("alert-dataverse-throttling.kql", '== "429"'),
        ("alert-pipeline-paused.kql", '"leadpush.pipeline.paused"'),
        ("alert-pipeline-paused.kql", '== "pipeline_paused"'),
    ],
)
def test_alert_queries_look_for_their_condition(name, needle):
    assert needle in Path(INFRA / "monitoring" / "queries" / name).read_text()


def test_the_conversion_panel_runs_the_readmes_query():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## A CRM where people work") :]
    (block,) = re.findall(r"```kusto\n(.*?)```", section[: section.index("\n## ", 3)], re.S)
    panel = re.sub(r"//[^\n]*\n", "", (INFRA / "monitoring" / "queries" / "workbook-conversion.kql").read_text())

    assert panel.strip() == block.strip()
