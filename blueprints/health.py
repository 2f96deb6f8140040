"""GET /api/health and GET /api/openapi.yaml, both anonymous."""

from __future__ import annotations

import logging
from pathlib import Path

import azure.functions as func

from blueprints.responses import json_response
from shared.model.errors import TransientError
from shared.runtime.container import Container

logger = logging.getLogger(__name__)

OPENAPI = Path(__file__).resolve().parent.parent / "openapi.yaml"


def blueprint(container: Container) -> func.Blueprint:
    bp = func.Blueprint()

    @bp.function_name("health")
    @bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def health(req: func.HttpRequest) -> func.HttpResponse:
        unresolved = list(container.settings.unresolved_settings)
        checks = {
            "database": _check(lambda: container.store.ping()),
            "queue": _check(lambda: container.queues.ping()),
            "dataverse": _dataverse(container),
            "settings": "unresolved" if unresolved else "ok",
        }
        healthy = all(result == "ok" for result in checks.values())
        body: dict = {"status": "ok" if healthy else "unavailable", "checks": checks}
        if unresolved:
            # names only: a reference's text is configuration, and no secret value is ever known here
            logger.warning("health_settings_unresolved: %s", ", ".join(unresolved))
            body["unresolved_settings"] = unresolved
        return json_response(200 if healthy else 503, body)

    @bp.function_name("openapi")
    @bp.route(route="openapi.yaml", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
    def openapi(req: func.HttpRequest) -> func.HttpResponse:
        return func.HttpResponse(OPENAPI.read_bytes(), status_code=200, mimetype="application/yaml")

    return bp


def _check(probe) -> str:
    """'ok' or 'unavailable': the details go to the log, not to an anonymous caller."""
    try:
        probe()
    except TransientError as exc:
        logger.warning("health_check_failed: %s", exc)
        return "unavailable"
    return "ok"


def _dataverse(container: Container) -> str:
    """'paused' while an org-level failure pauses the pipeline (its reason goes to the log)."""
    try:
        pause = container.store.pause()
    except TransientError:
        return "unknown"
    if pause is None:
        return "ok"
    logger.warning(
        "health_pipeline_paused reason=%s since=%s: %s",
        pause.reason,
        pause.opened_at.isoformat(),
        pause.detail,
        extra={"pause_reason": pause.reason},
    )
    return "paused"
