"""The names a KQL query takes from Application Insights: tables, columns, customDimensions keys and
`leadpush.*` metric names. Not a KQL parser: a query's own names (extend/summarize aliases) are told
from columns by a list of every column of the classic tables."""

from __future__ import annotations

import re
from dataclasses import dataclass

from tests.telemetry.emitted import ALL_COLUMNS, KNOWN_TABLES, Emitted

# Log Analytics (workspace-based) names of the same tables: a query using them is reported, since
# the check knows the classic schema only.
WORKSPACE_TABLES = frozenset(
    {
        "AppRequests",
        "AppDependencies",
        "AppTraces",
        "AppExceptions",
        "AppMetrics",
        "AppEvents",
        "AppPageViews",
        "AppAvailabilityResults",
        "AppPerformanceCounters",
    }
)

_COMMENT = re.compile(r"//[^\n]*")
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_DIMENSION = re.compile(r"\bcustomDimensions(?:\.([A-Za-z_][\w.]*)|\[\s*[\"']([^\"']+)[\"']\s*\])")
_IDENTIFIER = re.compile(r"(?<![\w.])([A-Za-z_]\w*)\b")
_METRIC = re.compile(r"^leadpush\.[\w.]+$")


@dataclass(frozen=True)
class QueryNames:
    tables: frozenset[str]
    columns: frozenset[str]
    dimensions: frozenset[str]
    metrics: frozenset[str]
    workspace_tables: frozenset[str]


def query_names(text: str) -> QueryNames:
    text = _COMMENT.sub("", text)
    literals = [match.group()[1:-1] for match in _STRING.finditer(text)]
    dimensions = {m.group(1) or m.group(2) for m in _DIMENSION.finditer(text)}
    code = _DIMENSION.sub(" ", _STRING.sub('""', text))
    identifiers = {m.group(1) for m in _IDENTIFIER.finditer(code)}
    return QueryNames(
        tables=frozenset(identifiers & KNOWN_TABLES),
        columns=frozenset(identifiers & (ALL_COLUMNS - {"customDimensions"})),
        dimensions=frozenset(dimensions),
        metrics=frozenset(literal for literal in literals if _METRIC.match(literal)),
        workspace_tables=frozenset(identifiers & WORKSPACE_TABLES),
    )


def unknown_names(text: str, seen: Emitted) -> list[str]:
    """What query `text` names that the app never emitted (empty when it names only emitted things)."""
    used = query_names(text)
    problems: list[str] = []
    if used.workspace_tables:
        problems.append(f"workspace table names {sorted(used.workspace_tables)}; use the classic ones")
    if not used.tables:
        problems.append("names no Application Insights table")
    problems += [f"table {table} receives nothing from the app" for table in sorted(used.tables - set(seen.tables))]
    tables = sorted(used.tables & set(seen.tables))
    columns = set().union(*(seen.tables[t] for t in tables))
    problems += [f"column {column} is not filled in {tables}" for column in sorted(used.columns - columns)]
    keys = set().union(*(seen.dimensions.get(t, set()) for t in tables))
    problems += [f"customDimensions.{key} is never sent to {tables}" for key in sorted(used.dimensions - keys)]
    problems += [f"metric {metric} is never sent" for metric in sorted(used.metrics - set(seen.metrics))]
    return problems
