"""The lead queue and its poison queue, on Azure Storage (Azurite locally).

Clients sign in as `shared.storage.config` says: with a connection string, or with a managed
identity's token (`azure-identity`) against the queue service URL.

The adapter moves wire text as it is: messages are encoded by `shared.model.messages` (base64 JSON), and a
message moved to the poison queue or replayed from it keeps its exact bytes, even one that is not ours.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from datetime import datetime
from typing import Any

import requests
import requests.adapters
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError, ResourceExistsError, ResourceNotFoundError
from azure.core.pipeline.transport import RequestsTransport
from azure.identity import ManagedIdentityCredential
from azure.storage.queue import LinearRetry, QueueClient

from shared.model.errors import QueueUnavailable
from shared.model.ports import ReceivedMessage
from shared.storage.config import ConnectionStringStorage, StorageConfig

logger = logging.getLogger(__name__)

_SEND_THREADS = 8
_MAX_VISIBILITY_SECONDS = 7 * 24 * 3600
# Storage expires a message after 7 days unless told otherwise: a lead waiting out a long outage,
# or waiting in the poison queue for a replay, must not silently disappear.
NEVER_EXPIRES = -1
# Every storage call has a bounded worst case, so that a webhook post answers (a 503 at worst) well within
# a minute when storage stalls, rather than after the SDK's default retries (four tries with 15, 18 and
# 24 s of back-off between them: over 90 s per message): 5 s to connect, 10 s for an answer, one retry
# after 0-2 s.
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 10
_RETRY = LinearRetry(backoff=1, random_jitter_range=1, retry_total=1)
# A batch of sends stops starting new ones after this, and does not wait for those under way.
SEND_BUDGET_SECONDS = 20.0


class LeadQueues:
    """Sends to the lead queue and its poison queue, and moves messages between them."""

    def __init__(self, storage: StorageConfig | str, queue_name: str) -> None:
        """`storage` as the settings read it, or a connection string."""
        if isinstance(storage, str):
            storage = ConnectionStringStorage(storage)
        credential = storage_credential(storage)
        self.main = _client(storage, queue_name, credential)
        self.poison = _client(storage, f"{queue_name}-poison", credential)
        self._ensured = False

    def ensure(self) -> None:
        """Create both queues if missing (idempotent; the host also creates the main one)."""
        if self._ensured:
            return
        for client in (self.main, self.poison):
            try:
                client.create_queue()
            except ResourceExistsError:
                pass
            except AzureError as exc:
                raise QueueUnavailable(f"cannot create queue {client.queue_name}: {exc.message}") from exc
        self._ensured = True

    def send(self, texts: Sequence[str], *, delay_seconds: int = 0) -> None:
        """Put wire texts on the lead queue, within SEND_BUDGET_SECONDS and a few more for the sends
        under way. Raises QueueUnavailable; some may have been sent, and some may still be sent after."""
        self.ensure()
        delay = min(max(int(delay_seconds), 0), _MAX_VISIBILITY_SECONDS) or None

        def send_one(text: str) -> None:
            self.main.send_message(text, visibility_timeout=delay, time_to_live=NEVER_EXPIRES)

        try:
            if len(texts) == 1:
                send_one(texts[0])
            else:
                _send_all(send_one, texts)
        except AzureError as exc:
            raise QueueUnavailable(f"cannot send to queue {self.main.queue_name}: {exc.message}") from exc
        except TimeoutError as exc:
            raise QueueUnavailable(f"cannot send to queue {self.main.queue_name}: {exc}") from exc

    def send_to_poison(self, text: str) -> None:
        self.ensure()
        try:
            self.poison.send_message(text, time_to_live=NEVER_EXPIRES)
        except AzureError as exc:
            raise QueueUnavailable(f"cannot send to queue {self.poison.queue_name}: {exc.message}") from exc

    def delay_redelivery(self, message_id: str, pop_receipt: str, seconds: float) -> None:
        """Push back when the runtime will see this message again (a back-off for a retry).

        The runtime then fails to update the message with its own, now stale, pop receipt, which it
        tolerates; the message comes back after `seconds` with its dequeue count raised by one.
        """
        try:
            self.main.update_message(message_id, pop_receipt, visibility_timeout=int(seconds))
        except AzureError as exc:
            logger.warning("queue_backoff_failed %s", exc.__class__.__name__, extra={"message_id": message_id})

    def drain_poison(self, *, visibility_seconds: int = 60) -> Iterator[ReceivedMessage]:
        """Every poison message once, hidden while the caller decides what to do with it."""
        self.ensure()
        seen: set[str] = set()
        while True:
            batch = list(
                self.poison.receive_messages(
                    messages_per_page=32, visibility_timeout=visibility_seconds, max_messages=32
                )
            )
            fresh = [m for m in batch if m.id not in seen]
            if not fresh:
                return
            for m in fresh:
                seen.add(m.id)
                yield ReceivedMessage(id=m.id, pop_receipt=m.pop_receipt or "", text=m.content)

    def remove_from_poison(self, message: ReceivedMessage) -> None:
        with contextlib.suppress(ResourceNotFoundError):
            self.poison.delete_message(message.id, message.pop_receipt)

    def release_poison(self, message: ReceivedMessage) -> None:
        """Make a poison message visible again, untouched."""
        with contextlib.suppress(ResourceNotFoundError):
            self.poison.update_message(message.id, message.pop_receipt, visibility_timeout=0)

    def ping(self) -> None:
        try:
            self.main.get_queue_properties()
        except ResourceNotFoundError:
            self.ensure()
        except AzureError as exc:
            raise QueueUnavailable(f"queue {self.main.queue_name} unreachable: {exc.message}") from exc

    def oldest_waiting(self) -> datetime | None:
        """When the message at the front of the lead queue was sent; None for an empty queue.
        Raises QueueUnavailable."""
        try:
            front = list(self.main.peek_messages(max_messages=1))
        except ResourceNotFoundError:
            return None
        except AzureError as exc:
            raise QueueUnavailable(f"queue {self.main.queue_name} unreachable: {exc.message}") from exc
        return front[0].inserted_on if front else None

    def depths(self) -> dict[str, int]:
        """Queue name -> approximate message count, for the lead queue and its poison queue (0 for
        one not created yet). Raises QueueUnavailable."""
        counts: dict[str, int] = {}
        for client in (self.main, self.poison):
            try:
                counts[client.queue_name] = client.get_queue_properties().approximate_message_count or 0
            except ResourceNotFoundError:
                counts[client.queue_name] = 0
            except AzureError as exc:
                raise QueueUnavailable(f"queue {client.queue_name} unreachable: {exc.message}") from exc
        return counts


def _send_all(send_one: Callable[[str], None], texts: Sequence[str]) -> None:
    """`send_one` for each text on a few threads. Raises the first failure, or TimeoutError when the
    budget is spent, without waiting for the sends still under way."""
    caller = contextvars.copy_context()  # each send stays in the caller's trace
    pool = ThreadPoolExecutor(max_workers=min(_SEND_THREADS, len(texts)))
    try:
        futures = [pool.submit(caller.copy().run, send_one, text) for text in texts]
        done, pending = wait(futures, timeout=SEND_BUDGET_SECONDS, return_when=FIRST_EXCEPTION)
        for future in done:
            future.result()
        if pending:
            raise TimeoutError(f"{len(pending)} of {len(texts)} messages not sent within {SEND_BUDGET_SECONDS:g} s")
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def storage_credential(storage: StorageConfig) -> TokenCredential | None:
    """The managed identity an identity-based connection signs in with; None for a connection string.

    Share one between the clients of a connection: it caches its token.
    """
    if isinstance(storage, ConnectionStringStorage):
        return None
    return ManagedIdentityCredential(client_id=storage.client_id)


def queue_client(storage: StorageConfig, name: str, credential: TokenCredential | None, **options: Any) -> QueueClient:
    """A client for queue `name`; `credential` from `storage_credential(storage)`, options as QueueClient's."""
    if isinstance(storage, ConnectionStringStorage):
        return QueueClient.from_connection_string(storage.connection_string, name, **options)
    return QueueClient(storage.queue_service_uri, name, credential=credential, **options)


def _client(storage: StorageConfig, name: str, credential: TokenCredential | None) -> QueueClient:
    return queue_client(
        storage,
        name,
        credential,
        transport=RequestsTransport(
            session=_pooled_session(), connection_timeout=CONNECT_TIMEOUT_SECONDS, read_timeout=READ_TIMEOUT_SECONDS
        ),
        retry_policy=_RETRY,
    )


def _pooled_session() -> requests.Session:
    """One kept connection per worker thread (requests keeps 10)."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=32)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session
