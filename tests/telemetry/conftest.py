"""In-memory OpenTelemetry pipelines, set up as the Azure Monitor distro sets up its own (global
providers, a LoggingHandler on the root logger, requests and psycopg2 instrumented), and the local
Functions host run in this process so its spans land there too."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry import metrics, trace
from opentelemetry._logs import set_logger_provider
from opentelemetry.instrumentation.logging.handler import LoggingHandler
from opentelemetry.instrumentation.psycopg2 import Psycopg2Instrumentor
from opentelemetry.instrumentation.requests import RequestsInstrumentor
from opentelemetry.sdk._logs import LoggerProvider, ReadableLogRecord
from opentelemetry.sdk._logs.export import InMemoryLogRecordExporter, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from local.funchost.local_host import LocalHost
from local.services import REPO
from tests.conftest import APP_SETTINGS

_TELEMETRY_SETTINGS = ("APPLICATIONINSIGHTS_CONNECTION_STRING", "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY")


@dataclass
class Telemetry:
    spans: InMemorySpanExporter
    logs: InMemoryLogRecordExporter
    reader: InMemoryMetricReader

    def clear(self) -> None:
        self.spans.clear()
        self.logs.clear()

    def finished_spans(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def log_records(self) -> list[ReadableLogRecord]:
        return list(self.logs.get_finished_logs())

    def points(self, name: str) -> list[Any]:
        """The current data points of metric `name` (cumulative since the session started)."""
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        for resource_metrics in data.resource_metrics if data else []:
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def counts(self, name: str, attribute: str) -> dict[str, float]:
        """Counter `name` (or a histogram's count) by the value of `attribute`."""
        totals: dict[str, float] = {}
        for point in self.points(name):
            key = str(point.attributes.get(attribute))
            totals[key] = totals.get(key, 0) + (point.count if hasattr(point, "count") else point.value)
        return totals


@pytest.fixture(scope="session")
def otel() -> Iterator[Telemetry]:
    spans, logs, reader = InMemorySpanExporter(), InMemoryLogRecordExporter(), InMemoryMetricReader()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    logger_provider = LoggerProvider()
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    set_logger_provider(logger_provider)
    handler = LoggingHandler(logger_provider=logger_provider)
    logging.getLogger().addHandler(handler)
    RequestsInstrumentor().instrument()
    Psycopg2Instrumentor().instrument(skip_dep_check=True)
    yield Telemetry(spans, logs, reader)
    Psycopg2Instrumentor().uninstrument()
    RequestsInstrumentor().uninstrument()
    logging.getLogger().removeHandler(handler)


@pytest.fixture
def telemetry(otel: Telemetry) -> Telemetry:
    otel.clear()
    return otel


@pytest.fixture
def in_process_host(
    monkeypatch: pytest.MonkeyPatch, otel: Telemetry
) -> Iterator[Callable[[dict[str, str]], LocalHost]]:
    """`in_process_host(env) -> LocalHost`: the local Functions host in this process, with `env` as
    the app settings in os.environ (telemetry settings off: the in-memory pipelines stand in)."""
    hosts: list[LocalHost] = []

    def start(env: dict[str, str]) -> LocalHost:
        for name in (*APP_SETTINGS, *_TELEMETRY_SETTINGS):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        host = LocalHost(REPO, port=0).start()
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.stop()
