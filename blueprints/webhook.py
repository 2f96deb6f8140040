"""POST /api/leads: Hunter's webhook."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import azure.functions as func

from blueprints.responses import json_response, unavailable, unresolved_setting
from shared.intake import IntakeError, body_digest, delivery_id, parse_leads, verify_signature
from shared.model.errors import TransientError
from shared.observability.telemetry import current_traceparent, record_leads_accepted
from shared.runtime.container import Container
from shared.runtime.settings import WEBHOOK_SECRET_SETTING
from shared.usecases.accept import accept_leads

logger = logging.getLogger(__name__)


def blueprint(container: Container) -> func.Blueprint:
    bp = func.Blueprint()
    settings = container.settings

    @bp.function_name("receive_leads")
    @bp.route(route="leads", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
    def receive_leads(req: func.HttpRequest) -> func.HttpResponse:
        if settings.webhook_secret_unresolved or not (settings.hunter_webhook_secret or settings.hunter_allow_unsigned):
            # Its reference's text is no secret: nothing is authenticated with it, unsigned calls neither.
            logger.error("webhook_secret_unresolved: %s is an unresolved Key Vault reference", WEBHOOK_SECRET_SETTING)
            return unresolved_setting(WEBHOOK_SECRET_SETTING)
        body = req.get_body()
        received_at = datetime.now(UTC)
        try:
            if settings.hunter_webhook_secret:
                verify_signature(
                    body,
                    req.headers,
                    secret=settings.hunter_webhook_secret,
                    tolerance_seconds=settings.hunter_signature_tolerance_seconds,
                    now=time.time(),
                )
            delivery = delivery_id(req.headers)
            leads = parse_leads(body, req.headers.get("Content-Type"), now=received_at)
            accepted = accept_leads(
                leads,
                store=container.store,
                queues=container.queues,
                received_at=received_at,
                delivery_id=delivery,
                body_sha256=body_digest(body) if delivery else None,
                traceparent=current_traceparent(),
            )
        except IntakeError as exc:
            logger.info(
                "webhook_refused status=%s problems=%s",
                exc.status,
                len(exc.problems),
                extra={"http_status": exc.status},
            )
            return json_response(exc.status, exc.response_body())
        except TransientError as exc:
            logger.warning("webhook_unavailable: %s", exc)
            return unavailable("service")
        if not accepted.get("duplicate_delivery"):
            record_leads_accepted(len(accepted["company_ids"]))
        return json_response(202, accepted)

    return bp
