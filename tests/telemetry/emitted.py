"""What the app's telemetry becomes in Application Insights: tables, their columns, customDimensions
keys and metric names, derived from the envelopes the Azure Monitor exporter sent.

Each envelope's `baseType` names its table; its `baseData` fields and context tags fill the table's
columns as the ingestion service maps them (e.g. MetricData `metrics[0].count` -> `valueCount`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from tests.telemetry.ingestion import TABLES

# Columns of the classic Application Insights tables and the envelope field that fills each.
_FIELDS: dict[str, dict[str, str]] = {
    "requests": {
        "id": "id",
        "name": "name",
        "url": "url",
        "resultCode": "responseCode",
        "duration": "duration",
        "success": "success",
        "source": "source",
        "performanceBucket": "duration",
    },
    "dependencies": {
        "id": "id",
        "name": "name",
        "data": "data",
        "target": "target",
        "type": "type",
        "resultCode": "resultCode",
        "duration": "duration",
        "success": "success",
        "performanceBucket": "duration",
    },
    "traces": {"message": "message", "severityLevel": "severityLevel"},
    "exceptions": {
        "severityLevel": "severityLevel",
        "type": "exceptions",
        "outerType": "exceptions",
        "outerMessage": "exceptions",
        "innermostType": "exceptions",
        "innermostMessage": "exceptions",
        "details": "exceptions",
        "problemId": "exceptions",
    },
    "customEvents": {"name": "name"},
    "customMetrics": {
        "name": "metrics",
        "value": "metrics",
        "valueSum": "metrics",
        "valueCount": "metrics",
        "valueMin": "metrics",
        "valueMax": "metrics",
        "valueStdDev": "metrics",
    },
}
_TAGS = {
    "operation_Id": "ai.operation.id",
    "operation_ParentId": "ai.operation.parentId",
    "operation_Name": "ai.operation.name",
    "cloud_RoleName": "ai.cloud.role",
    "cloud_RoleInstance": "ai.cloud.roleInstance",
    "user_Id": "ai.user.id",
    "user_AuthenticatedId": "ai.user.authUserId",
    "session_Id": "ai.session.id",
    "client_IP": "ai.location.ip",
    "operation_SyntheticSource": "ai.operation.syntheticSource",
    "application_Version": "ai.application.ver",
}
# Filled by the ingestion service for every item.
_ALWAYS = {"timestamp", "itemType", "itemId", "itemCount", "appId", "appName", "iKey", "sdkVersion", "client_Type"}
# Every column of those tables that a query could name (for telling columns from a query's own names).
ALL_COLUMNS = frozenset(
    {c for fields in _FIELDS.values() for c in fields}
    | set(_TAGS)
    | _ALWAYS
    | {
        "customDimensions",
        "customMeasurements",
        "user_AccountId",
        "client_Model",
        "client_OS",
        "client_City",
        "client_StateOrProvince",
        "client_CountryOrRegion",
        "client_Browser",
        "handledAt",
        "assembly",
        "method",
        "outerAssembly",
        "outerMethod",
        "innermostAssembly",
        "innermostMethod",
    }
)
KNOWN_TABLES = frozenset(_FIELDS) | {"pageViews", "browserTimings", "availabilityResults", "performanceCounters"}


@dataclass
class Emitted:
    tables: dict[str, set[str]] = field(default_factory=dict)  # table -> columns with values
    dimensions: dict[str, set[str]] = field(default_factory=dict)  # table -> customDimensions keys
    metrics: dict[str, set[str]] = field(default_factory=dict)  # metric name -> its dimension keys

    def to_json(self) -> dict[str, Any]:
        return {
            "tables": {t: sorted(c) for t, c in sorted(self.tables.items())},
            "customDimensions": {t: sorted(k) for t, k in sorted(self.dimensions.items())},
            "metrics": {m: sorted(k) for m, k in sorted(self.metrics.items())},
        }


def emitted(envelopes: Iterable[dict[str, Any]]) -> Emitted:
    names = Emitted()
    for envelope in envelopes:
        data = envelope.get("data", {})
        table = TABLES.get(data.get("baseType"))
        if table is None:
            continue
        base = data.get("baseData", {})
        if table == "customMetrics" and not _custom_metric(base):
            continue
        columns = names.tables.setdefault(table, set(_ALWAYS))
        columns.update(column for column, source in _FIELDS[table].items() if base.get(source) not in (None, "", []))
        columns.update(column for column, tag in _TAGS.items() if envelope.get("tags", {}).get(tag))
        properties = base.get("properties") or {}
        if properties:
            columns.add("customDimensions")
            names.dimensions.setdefault(table, set()).update(properties)
        if base.get("measurements"):
            columns.add("customMeasurements")
        if table == "customMetrics":
            for metric in base.get("metrics", []):
                names.metrics.setdefault(metric["name"], set()).update(properties)
    return names


def _custom_metric(base: dict[str, Any]) -> bool:
    """Not the exporter's own: performance counters (`\\Processor...`, table performanceCounters),
    standard metrics (`_MS.MetricId`) and the resource record (`_OTELRESOURCE_`)."""
    name = (base.get("metrics") or [{}])[0].get("name", "")
    return not (name.startswith("\\") or name == "_OTELRESOURCE_" or "_MS.MetricId" in (base.get("properties") or {}))
