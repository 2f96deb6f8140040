"""Telemetry as Azure Functions runs it for Python, on the local host.

- `configure_worker_telemetry(environ)`: what the Python worker does at start-up, before it loads
  the app, when PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true: `configure_azure_monitor()` with
  APPLICATIONINSIGHTS_CONNECTION_STRING and the logger named by PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME
  (default: the root logger), resource detector `azure_functions`. The exporter sends to the
  connection string's IngestionEndpoint; OTEL_METRIC_EXPORT_INTERVAL (ms) sets the metric export
  interval (the SDK's periodic reader reads it). Locally the exporter's own usage statistics
  (statsbeat, sent to a fixed Microsoft endpoint) are off unless the environment says otherwise,
  and live metrics are on only when the connection string names a LiveEndpoint. Traces are sampled
  as the deployment samples them (every trace, the OTEL_TRACES_SAMPLER* settings of
  infra/app/api.bicep) unless the environment names a sampler of its own: `sample_as_deployed`.
- `traced(spec, argument, call)`: what the host does around each invocation with telemetryMode
  OpenTelemetry: a request span (HTTP: `POST /api/leads`, continuing an incoming `traceparent`;
  other triggers: the function's name), current while the function runs, as the worker attaches
  the host's trace context to the invocation.
- `untraced(fn)`: the host's own storage calls (polling, deleting, poisoning messages) are made
  by the .NET host in Azure and never reach the Python worker's telemetry; here they run in this
  process, so they run where nothing is recorded.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import azure.functions as func
from opentelemetry import context, trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from local.funchost.app_loader import FunctionSpec

logger = logging.getLogger(__name__)

ENABLE_SETTING = "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"
CONNECTION_SETTING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
LOGGER_NAME_SETTING = "PYTHON_APPLICATIONINSIGHTS_LOGGER_NAME"
SAMPLER_SETTING = "OTEL_TRACES_SAMPLER"
# As infra/app/api.bicep sets them in Azure. Without them the distro keeps about 5 traces a second and drops
# most pushes of a batch, so `make run` would show less than the deployment records.
DEPLOYED_SAMPLER = {SAMPLER_SETTING: "microsoft.fixed_percentage", f"{SAMPLER_SETTING}_ARG": "1.0"}

_tracer = trace.get_tracer("local.funchost")
_propagator = TraceContextTextMapPropagator()
_configured = False


def telemetry_enabled(environ: Mapping[str, str]) -> bool:
    return environ.get(ENABLE_SETTING, "").strip().lower() in ("true", "1")


def sample_as_deployed(environ: MutableMapping[str, str]) -> bool:
    """Keep every trace, as the deployment does, unless `environ` names a sampler (OTEL_TRACES_SAMPLER or
    its _ARG); True when the deployment's sampler was set."""
    if any(name.startswith(SAMPLER_SETTING) for name in environ):
        return False
    environ.update(DEPLOYED_SAMPLER)
    return True


def configure_worker_telemetry(environ: MutableMapping[str, str]) -> bool:
    """Configure the Azure Monitor distro once per process, as the worker does; False when the
    setting is off or no connection string is set (then nothing is exported)."""
    global _configured
    if _configured or not telemetry_enabled(environ):
        return _configured
    connection_string = environ.get(CONNECTION_SETTING)
    if not connection_string:
        logger.warning("%s is true but %s is not set: no telemetry is sent", ENABLE_SETTING, CONNECTION_SETTING)
        return False
    from azure.monitor.opentelemetry import configure_azure_monitor  # only when asked: it is slow to import

    environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_functions")
    environ.setdefault("APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL", "true")
    sample_as_deployed(environ)  # the distro reads it from the environment
    # Live metrics talk to the connection string's LiveEndpoint, else to a public default that a
    # local stand-in for ingestion cannot answer: on only when one is named.
    configure_azure_monitor(
        connection_string=connection_string,
        logger_name=environ.get(LOGGER_NAME_SETTING, ""),
        enable_live_metrics="liveendpoint=" in connection_string.lower(),
    )
    _configured = True
    logger.info("telemetry: Azure Monitor distro configured")
    return True


def traced(spec: FunctionSpec, argument: Any, call: Callable[[], Any]) -> Any:
    """Run `call` inside the host's request span for this invocation, in a context of its own (not
    the host thread's); returns what `call` returns."""
    if isinstance(argument, func.HttpRequest):
        url = urlsplit(argument.url)
        route = _route(url.path, spec.trigger.route or spec.name)
        name = f"{argument.method} {route}"
        parent = _propagator.extract(
            {key.lower(): value for key, value in argument.headers.items()}, context=context.Context()
        )
        attributes = {
            "http.request.method": argument.method,
            "url.full": argument.url,
            "url.path": url.path,
            "url.scheme": url.scheme or "http",
            "http.route": route,
        }
    else:
        name, parent, attributes = spec.name, context.Context(), {}
    attributes |= {"faas.trigger": _TRIGGERS.get(spec.trigger.type, "other"), "faas.name": spec.name}
    token = context.attach(parent)
    try:
        with _tracer.start_as_current_span(name, kind=SpanKind.SERVER, attributes=attributes) as span:
            result = call()
            status = getattr(result, "status_code", None)
            if isinstance(status, int):
                span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
            return result
    finally:
        context.detach(token)


_TRIGGERS = {"queueTrigger": "pubsub", "timerTrigger": "timer", "httpTrigger": "http"}

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")


def untraced(fn: F) -> F:
    """`fn`, run under a span that is not recorded (samplers drop its children) and with
    instrumentation suppressed. An invocation inside it still opens its own recorded trace."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        dropped = NonRecordingSpan(
            SpanContext(
                random.getrandbits(128) or 1,
                random.getrandbits(64) or 1,
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.DEFAULT),
            )
        )
        token = context.attach(
            context.set_value(
                _SUPPRESS_INSTRUMENTATION_KEY, True, trace.set_span_in_context(dropped, context.Context())
            )
        )
        try:
            return fn(*args, **kwargs)
        finally:
            context.detach(token)

    return run  # type: ignore[return-value]


class _UntracedClient:
    """A storage client whose requests the Azure SDK does not trace (`tracing_options`)."""

    _REQUESTS = frozenset(
        {
            "create_queue",
            "get_queue_properties",
            "receive_messages",
            "peek_messages",
            "send_message",
            "update_message",
            "delete_message",
            "clear_messages",
        }
    )

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name in self._REQUESTS:
            return functools.partial(attribute, tracing_options={"enabled": False})
        return attribute


def untraced_client(client: C) -> C:
    """`client` (an azure-storage-queue QueueClient) with its requests left out of the telemetry: the
    host's own storage calls, which the .NET host makes in Azure. Samplers that ignore the parent
    span (microsoft.fixed_percentage) would otherwise keep them even under `untraced`."""
    return _UntracedClient(client)  # type: ignore[return-value]


def _route(path: str, template: str) -> str:
    """'/api/leads/86' with template 'leads/{company_id:long}' -> '/api/leads/{company_id}'."""
    template_parts = [part for part in template.strip("/").split("/") if part]
    path_parts = [part for part in path.strip("/").split("/") if part]
    prefix = path_parts[: max(0, len(path_parts) - len(template_parts))]
    parts = [p.split(":")[0] + "}" if p.startswith("{") and ":" in p else p for p in template_parts]
    return "/" + "/".join([*prefix, *parts])
