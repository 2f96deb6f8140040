"""In-process pipeline fixtures: the app's real components against Azurite, PostgreSQL and the emulators."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import pytest
from azure.storage.queue import QueueClient

from shared.runtime.container import Container
from shared.usecases.delivery import Delivery, RetryLater, handle_delivery
from shared.model.messages import LeadMessage
from shared.usecases.push import PushResult
from shared.runtime.settings import Settings


class Pipeline:
    """The container the function app would build, plus test verbs over it."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.settings = Settings.from_env(env)
        self.container = Container(self.settings)
        self.main = QueueClient.from_connection_string(env["AzureWebJobsStorage"], self.settings.lead_queue_name)
        self.poison = QueueClient.from_connection_string(env["AzureWebJobsStorage"], self.settings.poison_queue_name)

    def message(self, lead: dict, *, received_at: datetime | None = None) -> LeadMessage:
        return LeadMessage(lead=lead, correlation_id="test", received_at=received_at or datetime.now(timezone.utc))

    def accept(self, lead: dict) -> str:
        """Record the lead as the webhook does; returns its queue message."""
        message = self.message(lead)
        self.container.store.record_queued([message])
        return message.to_wire()

    def push(self, lead: dict, *, dequeue_count: int = 1) -> PushResult:
        return self.container.pusher.push(self.message(lead), dequeue_count=dequeue_count)

    def deliver(self, wire_text: str, *, dequeue_count: int = 1) -> PushResult | RetryLater:
        """Put one message on the queue, receive it, and handle it as the trigger would."""
        self.container.queues.ensure()
        self.main.send_message(wire_text)
        received = next(iter(self.main.receive_messages(max_messages=1, visibility_timeout=30)))
        try:
            result = handle_delivery(
                Delivery(body=received.content.encode(), message_id=received.id, pop_receipt=received.pop_receipt,
                         dequeue_count=dequeue_count),
                pusher=self.container.pusher, queues=self.container.queues, store=self.container.store,
                backoff_base_seconds=1, max_dequeue_count=self.settings.queue_runtime.max_dequeue_count)
        except RetryLater as exc:
            return exc
        self.main.delete_message(received.id, received.pop_receipt)
        return result

    def poison_texts(self) -> list[str]:
        return [m.content for m in self.poison.peek_messages(max_messages=32)]

    def main_texts(self) -> list[str]:
        return [m.content for m in self.main.peek_messages(max_messages=32)]

    def close(self) -> None:
        if "store" in self.container._built:
            self.container.store.close()


@pytest.fixture
def pipeline(app_env, identity, monkeypatch) -> Callable[..., Pipeline]:
    """`pipeline(emulator, **settings) -> Pipeline`, authenticating through the identity emulator."""
    built: list[Pipeline] = []
    monkeypatch.setenv("IDENTITY_ENDPOINT", identity.endpoint)
    monkeypatch.setenv("IDENTITY_HEADER", identity.header)

    def build(emulator, **overrides) -> Pipeline:
        p = Pipeline(app_env(emulator, **overrides))
        built.append(p)
        return p

    yield build
    for p in built:
        p.close()
