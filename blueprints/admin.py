"""Operator functions: replay from the poison queue (HTTP, admin key) and the stuck-lead sweeper (timer)."""

from __future__ import annotations

import json
import logging

import azure.functions as func

from blueprints.responses import json_response, unavailable
from shared.model.errors import TransientError
from shared.runtime.container import Container
from shared.usecases.replay import replay_poisoned
from shared.usecases.sweep import requeue_stuck_leads

logger = logging.getLogger(__name__)

SWEEP_SCHEDULE = "0 */5 * * * *"


def blueprint(container: Container) -> func.Blueprint:
    bp = func.Blueprint()

    # "admin/..." routes are reserved by the Functions host, hence "manage/".
    @bp.function_name("replay_poison")
    @bp.route(route="manage/replay", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
    def replay_poison(req: func.HttpRequest) -> func.HttpResponse:
        company_id = None
        if req.get_body():
            try:
                request = json.loads(req.get_body())
                company_id = request.get("company_id") if isinstance(request, dict) else None
                if company_id is not None and (not isinstance(company_id, int) or isinstance(company_id, bool)):
                    raise ValueError
            except ValueError:
                return json_response(
                    400,
                    {
                        "error": "Bad Request",
                        "problems": [{"field": "company_id", "reason": 'body must be {} or {"company_id": <integer>}'}],
                    },
                )
        try:
            moved = replay_poisoned(queues=container.queues, store=container.store, company_id=company_id)
        except TransientError:
            return unavailable("service")
        return json_response(200, {"replayed": moved})

    @bp.function_name("requeue_stuck_leads")
    @bp.timer_trigger(arg_name="timer", schedule=SWEEP_SCHEDULE, run_on_startup=False)
    def requeue_stuck(timer: func.TimerRequest) -> None:
        requeue_stuck_leads(
            store=container.store, queues=container.queues, age_seconds=container.settings.stuck_after_seconds
        )

    return bp
