"""The queue trigger: one delivery of one lead message, as the `push_lead` span of the webhook's trace."""

from __future__ import annotations

import time

import azure.functions as func

from shared.model.messages import LeadRef, MalformedMessage
from shared.observability.telemetry import push_span, record_push
from shared.runtime.container import Container
from shared.runtime.settings import STORAGE_SETTING
from shared.usecases.delivery import Delivery, RetryLater, handle_delivery


def blueprint(container: Container) -> func.Blueprint:
    bp = func.Blueprint()
    settings = container.settings

    @bp.function_name("push_lead")
    @bp.queue_trigger(arg_name="msg", queue_name=settings.lead_queue_name, connection=STORAGE_SETTING)
    def push_lead(msg: func.QueueMessage) -> None:
        body = msg.get_body()
        dequeue_count = msg.dequeue_count or 1
        ref = _reference(body)
        started = time.perf_counter()
        outcome = "error"  # an unexpected exception: the runtime delivers the message again
        others: tuple[str, ...] = ()  # leads written (or failed) in the same bulk request
        with push_span(
            ref.traceparent if ref else None,
            correlation_id=ref.correlation_id if ref else None,
            company_id=ref.company_id if ref else None,
        ) as span:
            try:
                result = handle_delivery(
                    Delivery(body=body, message_id=msg.id, pop_receipt=msg.pop_receipt, dequeue_count=dequeue_count),
                    pusher=container.pusher,
                    queues=container.queues,
                    store=container.store,
                    backoff_base_seconds=settings.queue_runtime.visibility_timeout_seconds,
                    max_dequeue_count=settings.queue_runtime.max_dequeue_count,
                )
                outcome, others = result.outcome, result.batch_outcomes
            except RetryLater as exc:
                outcome = exc.outcome
                raise
            finally:
                span.set_attribute("outcome", outcome)
                duration_ms = (time.perf_counter() - started) * 1000
                for each in (outcome, *others):
                    record_push(each, duration_ms)

    return bp


def _reference(body: bytes) -> LeadRef | None:
    """What the span needs from the message (trace context, ids); None for one that is not ours,
    which handle_delivery then sends to the poison queue with its reason."""
    try:
        return LeadRef.from_wire(body)
    except MalformedMessage:
        return None
