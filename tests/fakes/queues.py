"""An in-memory `shared.storage.queue.LeadQueues`: the lead queue and its poison queue as Azure Storage
queues behave (visibility timeouts, pop receipts, dequeue counts), on a clock the test moves.

Beyond the app's verbs it offers what the Functions runtime does with the lead queue (`receive`,
`delete`, `update_visibility`), for the simulation, and `texts()` / `poison_texts()` to look.
"""
from __future__ import annotations

import contextlib
import itertools
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.model.errors import QueueUnavailable
from shared.model.ports import ReceivedMessage
from tests.fakes.clock import FakeClock
from tests.fakes.faults import Step, no_step

MAX_VISIBILITY_SECONDS = 7 * 24 * 3600


@dataclass
class StoredMessage:
    id: str
    text: str
    inserted_on: datetime
    visible_at: datetime
    pop_receipt: str | None = None
    dequeue_count: int = 0
    order: int = 0


@dataclass(frozen=True)
class Dequeued:
    """A message as a receive hands it out (the runtime's view)."""

    id: str
    pop_receipt: str
    text: str
    dequeue_count: int
    inserted_on: datetime


class FakeQueue:
    """One storage queue."""

    def __init__(self, name: str, clock: FakeClock) -> None:
        self.queue_name = name
        self._clock = clock
        self.messages: dict[str, StoredMessage] = {}
        self._order = itertools.count()

    def put(self, text: str, delay_seconds: float = 0) -> StoredMessage:
        now = self._clock.now()
        message = StoredMessage(id=str(uuid.uuid4()), text=text, inserted_on=now,
                                visible_at=now + timedelta(seconds=delay_seconds), order=next(self._order))
        self.messages[message.id] = message
        return message

    def visible(self) -> list[StoredMessage]:
        """The messages a receive or peek may see, front first (earliest visible first)."""
        now = self._clock.now()
        return sorted((m for m in self.messages.values() if m.visible_at <= now),
                      key=lambda m: (m.visible_at, m.order))

    def receive(self, max_messages: int, visibility_timeout: float) -> list[Dequeued]:
        taken = []
        for message in self.visible()[:max_messages]:
            message.dequeue_count += 1
            message.pop_receipt = str(uuid.uuid4())
            message.visible_at = self._clock.now() + timedelta(seconds=visibility_timeout)
            taken.append(Dequeued(message.id, message.pop_receipt, message.text, message.dequeue_count,
                                  message.inserted_on))
        return taken

    def update(self, message_id: str, pop_receipt: str, visibility_timeout: float) -> bool:
        """False when the message is gone or the pop receipt is stale (Azure answers 404)."""
        message = self.messages.get(message_id)
        if message is None or message.pop_receipt != pop_receipt:
            return False
        message.visible_at = self._clock.now() + timedelta(seconds=visibility_timeout)
        message.pop_receipt = str(uuid.uuid4())
        return True

    def delete(self, message_id: str, pop_receipt: str) -> bool:
        message = self.messages.get(message_id)
        if message is None or message.pop_receipt != pop_receipt:
            return False
        del self.messages[message_id]
        return True


class FakeLeadQueues:
    def __init__(self, clock: FakeClock | None = None, *, queue_name: str = "leads", step: Step = no_step) -> None:
        self.clock = clock or FakeClock()
        self.step = step
        self.main = FakeQueue(queue_name, self.clock)
        self.poison = FakeQueue(f"{queue_name}-poison", self.clock)
        self._lock = threading.RLock()

    def _call(self, kind: str, apply: Callable[[], Any]) -> Any:
        fault = self.step(f"queue.{kind}")
        if fault is not None and fault.drop == "before":
            raise QueueUnavailable(f"cannot reach queue {self.main.queue_name}: connection reset")
        with self._lock:
            result = apply()
        if fault is not None and fault.drop == "after_commit":
            raise QueueUnavailable(f"cannot reach queue {self.main.queue_name}: connection reset")
        return result

    # --- LeadQueues' verbs ---------------------------------------------------------------------------

    def ensure(self) -> None:
        pass

    def ping(self) -> None:
        self._call("ping", lambda: None)

    def send(self, texts: Sequence[str], *, delay_seconds: int = 0) -> None:
        """Like the real one (parallel sends), a failure may come after some of the texts were sent:
        a connection dropped "before" still lets the first half through."""
        delay = min(max(int(delay_seconds), 0), MAX_VISIBILITY_SECONDS)
        fault = self.step("queue.send")
        sent = texts if fault is None or fault.drop != "before" else texts[: len(texts) // 2]
        with self._lock:
            for text in sent:
                self.main.put(text, delay)
        if fault is not None and fault.drop is not None:
            raise QueueUnavailable(f"cannot send to queue {self.main.queue_name}: connection reset")

    def send_to_poison(self, text: str) -> None:
        self._call("send_to_poison", lambda: self.poison.put(text))

    def delay_redelivery(self, message_id: str, pop_receipt: str, seconds: float) -> None:
        """Like the real one, never raises: a stale pop receipt or an unreachable queue is only
        logged there (the message then comes back after the runtime's own visibility timeout)."""
        with contextlib.suppress(QueueUnavailable):
            self._call("delay_redelivery", lambda: self.main.update(message_id, pop_receipt, int(seconds)))

    def drain_poison(self, *, visibility_seconds: int = 60) -> Iterator[ReceivedMessage]:
        seen: set[str] = set()
        while True:
            batch = self._call("drain_poison", lambda: self.poison.receive(32, visibility_seconds))
            fresh = [m for m in batch if m.id not in seen]
            if not fresh:
                return
            for m in fresh:
                seen.add(m.id)
                yield ReceivedMessage(id=m.id, pop_receipt=m.pop_receipt, text=m.text)

    def remove_from_poison(self, message: ReceivedMessage) -> None:
        self._call("remove_from_poison", lambda: self.poison.delete(message.id, message.pop_receipt))

    def release_poison(self, message: ReceivedMessage) -> None:
        self._call("release_poison", lambda: self.poison.update(message.id, message.pop_receipt, 0))

    def oldest_waiting(self) -> datetime | None:
        def apply() -> datetime | None:
            front = self.main.visible()[:1]
            return front[0].inserted_on if front else None

        return self._call("oldest_waiting", apply)

    def depths(self) -> dict[str, int]:
        return self._call("depths", lambda: {q.queue_name: len(q.messages) for q in (self.main, self.poison)})

    # --- the runtime's side of the lead queue ------------------------------------------------------

    def receive(self, *, max_messages: int = 1, visibility_timeout: float = 30) -> list[Dequeued]:
        return self._call("receive", lambda: self.main.receive(max_messages, visibility_timeout))

    def delete(self, message_id: str, pop_receipt: str) -> bool:
        return self._call("delete", lambda: self.main.delete(message_id, pop_receipt))

    def update_visibility(self, message_id: str, pop_receipt: str, seconds: float) -> bool:
        return self._call("update_visibility", lambda: self.main.update(message_id, pop_receipt, seconds))

    # --- for tests -----------------------------------------------------------------------------------

    def texts(self) -> list[str]:
        return [m.text for m in sorted(self.main.messages.values(), key=lambda m: m.order)]

    def poison_texts(self) -> list[str]:
        return [m.text for m in sorted(self.poison.messages.values(), key=lambda m: m.order)]
