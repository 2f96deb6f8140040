"""GET /api/leads/{company_id}: a lead's sync state."""

from __future__ import annotations

import azure.functions as func

from blueprints.responses import json_response, unavailable
from shared.model.errors import TransientError
from shared.runtime.container import Container

# A lead in one of these has more to write: while the pipeline is paused, it waits for the pause.
WAITING = ("queued", "processing", "error")


def blueprint(container: Container) -> func.Blueprint:
    bp = func.Blueprint()

    @bp.function_name("lead_status")
    @bp.route(route="leads/{company_id:long}", methods=["GET"], auth_level=func.AuthLevel.FUNCTION)
    def lead_status(req: func.HttpRequest) -> func.HttpResponse:
        try:
            company_id = int(req.route_params["company_id"])
        except (KeyError, ValueError):
            return json_response(
                400, {"error": "Bad Request", "problems": [{"field": "company_id", "reason": "must be an integer"}]}
            )
        try:
            state = container.store.lead_state(company_id)
            pause = container.store.pause() if state is not None and state["status"] in WAITING else None
        except TransientError:
            return unavailable("database")
        if state is None:
            return json_response(
                404,
                {"error": "Not Found", "problems": [{"field": "company_id", "reason": "no lead with this company_id"}]},
            )
        if pause is not None:
            state = {**state, "status": "paused", "paused_reason": pause.reason}
        return json_response(200, _with_crm(state))

    return bp


def _with_crm(state: dict) -> dict:
    """The CRM outcome as one object (null until a write's answer or the outcome reader showed it)."""
    crm = {key.removeprefix("crm_"): state.pop(key) for key in list(state) if key.startswith("crm_")}
    merged_into = crm.pop("merged_into", None)
    if crm.get("state") is None:
        return {**state, "crm": None}
    shown = {"state": crm["state"], "status_code": crm["status_code"], "owner_id": crm["owner_id"]}
    if merged_into is not None:
        shown["merged_into"] = merged_into
    return {**state, "crm": {**shown, "seen_at": crm["seen_at"]}}
