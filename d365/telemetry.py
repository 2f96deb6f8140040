"""The Dataverse request counter, through the OpenTelemetry API only (no SDK, no exporter).

Without a configured meter provider (tests of d365 alone, a deployment without telemetry) the
counter is a no-op. `d365` keeps to itself: the app's other instruments live in `shared.observability.telemetry`.
"""

from __future__ import annotations

from opentelemetry import metrics

METER_NAME = "leadpush"
DATAVERSE_REQUESTS = "leadpush.dataverse.requests"

_requests = metrics.get_meter(METER_NAME).create_counter(
    DATAVERSE_REQUESTS, unit="{request}", description="Dataverse Web API requests sent, by kind and HTTP status"
)


def record_dataverse_request(kind: str, status_code: int | None) -> None:
    """Count one request of `kind` (e.g. update_lead); `status_code` None or 0 = no response."""
    _requests.add(1, {"kind": kind, "status_code": str(status_code or 0)})
