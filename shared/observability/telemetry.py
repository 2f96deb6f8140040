"""The app's traces, metrics and log dimensions, through the OpenTelemetry API only.

Nothing here configures an SDK or an exporter: under Azure Functions the Python worker calls
`configure_azure_monitor()` (app setting PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true) before
the app is loaded, and locally `local.funchost` does the same. Without a configured provider every
instrument is a no-op. A second exporter of our own would send everything twice.

Names are fixed by the design (meter `leadpush`; Application Insights `customMetrics.name`):
leadpush.webhook.leads_accepted, leadpush.push.outcomes {outcome}, leadpush.push.duration {outcome},
leadpush.dataverse.requests {kind, status_code}, leadpush.queue.depth {queue},
leadpush.leads.by_status {status}.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Link, Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from d365.telemetry import DATAVERSE_REQUESTS, METER_NAME, record_dataverse_request
from shared.observability.redact import redact

__all__ = [
    "METER_NAME",
    "LEADS_ACCEPTED",
    "PUSH_OUTCOMES",
    "PUSH_DURATION",
    "DATAVERSE_REQUESTS",
    "QUEUE_DEPTH",
    "LEADS_BY_STATUS",
    "PIPELINE_PAUSED",
    "LEADS_BY_CRM_STATE",
    "OUTCOMES",
    "STATUSES",
    "PUSH_SPAN",
    "record_push",
    "record_leads_accepted",
    "record_dataverse_request",
    "report_queue_depths",
    "report_leads_by_status",
    "report_pipeline_pause",
    "report_leads_by_crm_state",
    "current_traceparent",
    "push_span",
    "LogDimensions",
    "install_log_dimensions",
]

LEADS_ACCEPTED = "leadpush.webhook.leads_accepted"
PUSH_OUTCOMES = "leadpush.push.outcomes"
PUSH_DURATION = "leadpush.push.duration"
QUEUE_DEPTH = "leadpush.queue.depth"
LEADS_BY_STATUS = "leadpush.leads.by_status"
PIPELINE_PAUSED = "leadpush.pipeline.paused"
LEADS_BY_CRM_STATE = "leadpush.leads.by_crm_state"
CRM_STATES = ("open", "qualified", "disqualified", "merged", "deleted")
PUSH_SPAN = "push_lead"
STALE_AFTER_SECONDS = 150.0  # a gauge read every minute: two readings missed

OUTCOMES = ("created", "updated", "unchanged", "skipped", "deferred", "paused", "error", "failed")
PAUSE_REASONS = ("credentials", "application_user", "privilege", "org_unavailable")
STATUSES = ("queued", "processing", "synced", "error", "failed")
# Another worker held the lead and the message was rescheduled: for the charts, a deferral.
_METRIC_OUTCOME = {"leased": "deferred"}

_tracer = trace.get_tracer(METER_NAME)
_meter = metrics.get_meter(METER_NAME)
_propagator = TraceContextTextMapPropagator()

_leads_accepted = _meter.create_counter(LEADS_ACCEPTED, unit="{lead}", description="Leads accepted by the webhook")
_push_outcomes = _meter.create_counter(PUSH_OUTCOMES, unit="{push}", description="Push attempts, by outcome")
_push_duration = _meter.create_histogram(PUSH_DURATION, unit="ms", description="Duration of one push, by outcome")


# --- counters and the histogram ----------------------------------------------------------------


def record_push(outcome: str, duration_ms: float) -> None:
    """One push attempt that ended with `outcome` (one of OUTCOMES, or `leased`)."""
    attributes = {"outcome": _METRIC_OUTCOME.get(outcome, outcome)}
    _push_outcomes.add(1, attributes)
    _push_duration.record(duration_ms, attributes)


def record_leads_accepted(count: int) -> None:
    if count:
        _leads_accepted.add(count)


# --- gauges: the last reading, reported at every collection -------------------------------------


class _LastReading:
    """Values read elsewhere (a timer function) and observed by the SDK when it collects. A reading
    older than `STALE_AFTER_SECONDS` is no longer reported: the timer runs on one instance at a time,
    and an instance that stopped reading must not keep reporting what it saw last (an old pause)."""

    def __init__(self, attribute: str) -> None:
        self._attribute = attribute
        self._values: dict[str, int] = {}
        self._read_at = float("-inf")
        self._lock = threading.Lock()

    def replace(self, values: Mapping[str, int]) -> None:
        with self._lock:
            self._values = dict(values)
            self._read_at = time.monotonic()

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            values = dict(self._values) if time.monotonic() - self._read_at < STALE_AFTER_SECONDS else {}
        return [Observation(value, {self._attribute: key}) for key, value in values.items()]


_queue_depths = _LastReading("queue")
_lead_statuses = _LastReading("status")
_pause = _LastReading("reason")
_crm_states = _LastReading("crm_state")
_meter.create_observable_gauge(
    QUEUE_DEPTH,
    callbacks=[_queue_depths.observe],
    unit="{message}",
    description="Approximate messages in the lead queue and its poison queue",
)
_meter.create_observable_gauge(
    LEADS_BY_STATUS, callbacks=[_lead_statuses.observe], unit="{lead}", description="Leads in each sync status"
)


_meter.create_observable_gauge(
    PIPELINE_PAUSED,
    callbacks=[_pause.observe],
    unit="{pause}",
    description="1 for the reason the pipeline is paused for (an org-level Dataverse failure), else 0",
)


_meter.create_observable_gauge(
    LEADS_BY_CRM_STATE,
    callbacks=[_crm_states.observe],
    unit="{lead}",
    description="Leads by what became of them in the CRM (open, qualified, disqualified, merged, deleted)",
)


def report_queue_depths(depths: Mapping[str, int]) -> None:
    """Queue name -> approximate message count, kept until the next reading."""
    _queue_depths.replace(depths)


def report_leads_by_status(counts: Mapping[str, int]) -> None:
    """Status -> leads; every status in STATUSES is reported, 0 when absent."""
    _lead_statuses.replace({status: int(counts.get(status, 0)) for status in (*STATUSES, *counts)})


def report_leads_by_crm_state(counts: Mapping[str, int]) -> None:
    """CRM state -> leads; every state in CRM_STATES is reported, 0 when absent."""
    _crm_states.replace({state: int(counts.get(state, 0)) for state in (*CRM_STATES, *counts)})


def report_pipeline_pause(reason: str | None) -> None:
    """The pause's reason, or None: every reason is reported, 1 for the current one."""
    _pause.replace({known: int(known == reason) for known in (*PAUSE_REASONS, *([reason] if reason else []))})


# --- traces -------------------------------------------------------------------------------------


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, to carry in a queue message; None outside a trace."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


@contextmanager
def push_span(traceparent: str | None, *, correlation_id: str | None, company_id: int | None) -> Iterator[Span]:
    """The `push_lead` span (CONSUMER): a child of the webhook's trace when the message carries its
    `traceparent`, linked to the span the host started for this invocation; without one, a child
    of that host span."""
    parent = _propagator.extract({"traceparent": traceparent}) if traceparent else None
    links: list[Link] = []
    if parent is not None and trace.get_current_span(parent).get_span_context().is_valid:
        invocation = trace.get_current_span().get_span_context()
        if invocation.is_valid:
            links.append(Link(invocation))
    else:
        parent = None
    attributes: dict[str, str | int] = {
        "messaging.system": "azure_storage_queue",
        "messaging.operation.type": "process",
    }
    if correlation_id:
        attributes["correlation_id"] = correlation_id
    if company_id is not None:
        attributes["company_id"] = company_id
    with _tracer.start_as_current_span(
        PUSH_SPAN, context=parent, kind=SpanKind.CONSUMER, links=links, attributes=attributes
    ) as span:
        yield span


# --- log records: the event name and the context fields as dimensions ---------------------------

# Attributes every LogRecord has; anything else on a record came from `extra`.
_STANDARD = frozenset(vars(logging.LogRecord("", logging.INFO, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}
_EVENT = re.compile(r"\s*([a-z][a-z0-9]*(?:_[a-z0-9]+)+)\b")
_SCALARS = (str, bool, int, float)


class LogDimensions(logging.Filter):
    """Adds `event` (the message's first word, when it is a snake_case event name) and turns every
    `extra` value into a type OpenTelemetry keeps as an attribute (Application Insights shows each
    as a string in customDimensions). Attach it to the *handlers*, like RedactingFilter."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "event" not in vars(record):
            match = _EVENT.match(record.msg if isinstance(record.msg, str) and not record.args else _message(record))
            if match:
                record.event = match.group(1)
        for name, value in list(vars(record).items()):
            if name in _STANDARD or value is None or isinstance(value, _SCALARS):
                continue
            if isinstance(value, (list, tuple)) and all(isinstance(item, _SCALARS) for item in value):
                continue
            setattr(record, name, redact(_text(value)))
        return True


def install_log_dimensions(logger: logging.Logger | None = None) -> None:
    """Idempotent: put LogDimensions on every handler of `logger` (the root logger by default), so
    the handler the Azure Monitor distro added there sends the dimensions."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, LogDimensions) for f in handler.filters):
            handler.addFilter(LogDimensions())


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError, KeyError):
        return str(record.msg)


def _text(value: object) -> str:
    if isinstance(value, Mapping):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)
