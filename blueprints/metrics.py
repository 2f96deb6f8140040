"""Timer: every minute, read the lead and poison queue depths, the leads per status and the pipeline's
pause for the gauges.

The storage account's own queue metric has no per-queue dimension and refreshes too slowly to
alert on, so the app reads the counts itself; the gauges report the last reading at each export.
"""

from __future__ import annotations

import logging

import azure.functions as func

from shared.model.errors import TransientError
from shared.observability.telemetry import report_leads_by_status, report_pipeline_pause, report_queue_depths
from shared.runtime.container import Container

logger = logging.getLogger(__name__)

METRICS_SCHEDULE = "0 * * * * *"


def blueprint(container: Container) -> func.Blueprint:
    bp = func.Blueprint()

    @bp.function_name("read_metrics")
    # Not on start-up: every scale-out would read again. The gauges report nothing until the first minute.
    @bp.timer_trigger(arg_name="timer", schedule=METRICS_SCHEDULE)
    def read_metrics(timer: func.TimerRequest) -> None:
        # Each reading on its own: a database outage must not also blind the queue depths.
        try:
            report_queue_depths(container.queues.depths())
        except TransientError as exc:
            logger.warning("metrics_unavailable source=queue: %s", exc, extra={"source": "queue"})
        try:
            report_leads_by_status(container.store.count_by_status())
            pause = container.store.pause()
            report_pipeline_pause(pause.reason if pause else None)
        except TransientError as exc:
            logger.warning("metrics_unavailable source=database: %s", exc, extra={"source": "database"})

    return bp
