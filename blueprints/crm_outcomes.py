"""Timer: every few minutes (`%CRM_OUTCOME_SCHEDULE%`, an app setting; `0 */5 * * * *` by default in
the templates and locally), bring back what became of the leads in the CRM."""

from __future__ import annotations

import logging

import azure.functions as func

from d365.errors import D365Error
from shared.model.errors import TransientError
from shared.observability.telemetry import report_leads_by_crm_state
from shared.runtime.container import Container
from shared.usecases.crm_outcomes import read_crm_outcomes

logger = logging.getLogger(__name__)


def blueprint(container: Container) -> func.Blueprint:
    bp = func.Blueprint()

    @bp.function_name("read_crm_outcomes")
    @bp.timer_trigger(arg_name="timer", schedule="%CRM_OUTCOME_SCHEDULE%", run_on_startup=False)
    def read_outcomes(timer: func.TimerRequest) -> None:
        try:
            read_crm_outcomes(dataverse=container.dataverse, store=container.store, queues=container.queues)
            report_leads_by_crm_state(container.store.count_by_crm_state())
        except (TransientError, D365Error) as exc:  # the next run reads from where this one stopped
            logger.warning("crm_outcomes_unavailable: %s", exc, extra={"error_type": type(exc).__name__})

    return bp
