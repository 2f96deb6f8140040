"""A lead's message never expires: not while it waits out a long outage, not in the poison queue."""
from __future__ import annotations

import contextlib
import secrets
from datetime import UTC, datetime, timedelta

from shared.storage.queue import LeadQueues


def test_messages_sent_to_either_queue_never_expire(azurite) -> None:
    queues = LeadQueues(azurite.connection_string, f"ttl-{secrets.token_hex(4)}")
    try:
        queues.send(["a", "b"])
        queues.send_to_poison("c")

        peeked = [*queues.main.peek_messages(max_messages=32), *queues.poison.peek_messages(max_messages=32)]

        assert len(peeked) == 3
        in_a_year = datetime.now(UTC) + timedelta(days=365)
        assert all(message.expires_on > in_a_year for message in peeked), [m.expires_on for m in peeked]
    finally:
        for client in (queues.main, queues.poison):
            with contextlib.suppress(Exception):
                client.delete_queue()
