"""The queue trigger: one delivery of one lead message."""
from __future__ import annotations

import azure.functions as func

from shared.container import Container
from shared.delivery import Delivery, handle_delivery
from shared.settings import STORAGE_SETTING


def blueprint(container: Container) -> func.Blueprint:
    bp = func.Blueprint()
    settings = container.settings

    @bp.function_name("push_lead")
    @bp.queue_trigger(arg_name="msg", queue_name=settings.lead_queue_name, connection=STORAGE_SETTING)
    def push_lead(msg: func.QueueMessage) -> None:
        handle_delivery(
            Delivery(body=msg.get_body(), message_id=msg.id, pop_receipt=msg.pop_receipt,
                     dequeue_count=msg.dequeue_count or 1),
            pusher=container.pusher,
            queues=container.queues,
            store=container.store,
            backoff_base_seconds=settings.queue_runtime.visibility_timeout_seconds,
            max_dequeue_count=settings.queue_runtime.max_dequeue_count,
        )

    return bp
