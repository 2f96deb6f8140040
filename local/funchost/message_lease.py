"""Keep received queue messages invisible while their functions run, as the Functions host does.

A message is received with a short visibility and renewed before it lapses, on one thread per
listener. Each renewal changes the message's pop receipt: the host settles the message (delete,
release, poison) with the newest one. A function that updates its own message with the receipt it was
given succeeds until the first renewal; after that the update fails (PopReceiptMismatch), as it does
in Azure once the host has renewed.

A renewal that finds the message gone or its receipt changed (the function deleted or updated it
itself) stops renewing that message: it is the function's now.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from azure.core.exceptions import AzureError, HttpResponseError
from azure.storage.queue import QueueClient, QueueMessage, StorageErrorCode

logger = logging.getLogger(__name__)

GONE = (StorageErrorCode.MESSAGE_NOT_FOUND, StorageErrorCode.POP_RECEIPT_MISMATCH)
RENEW_AT_SHARE = 0.75  # of the visibility: renewed when a quarter of it is left
_RETRY_SECONDS = 1.0  # a renewal that failed on storage is tried again this soon


@dataclass
class Lease:
    """A received message, its newest pop receipt, and when to renew it; `settled` once the host or
    the function has decided its fate."""

    message: QueueMessage
    pop_receipt: str
    renew_at: float
    settled: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class LeaseKeeper:
    """Renews the visibility of the messages in hand until each is settled."""

    def __init__(self, queue: QueueClient, *, visibility_seconds: int, name: str) -> None:
        self._queue = queue
        self._visibility = visibility_seconds
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._tick = min(1.0, visibility_seconds / 4)
        self._thread = threading.Thread(target=self._renew_loop, name=f"lease-{name}", daemon=True)

    @property
    def visibility_seconds(self) -> int:
        return self._visibility

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()

    def hold(self, message: QueueMessage) -> Lease:
        """Start renewing a message just received with this keeper's visibility."""
        lease = Lease(message, message.pop_receipt or "", time.monotonic() + self._visibility * RENEW_AT_SHARE)
        with self._lock:
            self._leases[message.id] = lease
        return lease

    def settle(self, lease: Lease) -> str:
        """Stop renewing; returns the newest pop receipt, to delete or release the message with."""
        with lease.lock:
            lease.settled = True
        with self._lock:
            self._leases.pop(lease.message.id, None)
        return lease.pop_receipt

    def _renew_loop(self) -> None:
        while not self._stopping.wait(self._tick):
            now = time.monotonic()
            with self._lock:
                due = [lease for lease in self._leases.values() if lease.renew_at <= now]
            for lease in due:
                self._renew(lease)

    def _renew(self, lease: Lease) -> None:
        with lease.lock:
            if lease.settled:
                return
            try:
                receipt = self._queue.update_message(lease.message.id, lease.pop_receipt,
                                                     visibility_timeout=self._visibility)
            except HttpResponseError as exc:
                if exc.error_code in GONE:  # the function deleted or updated its message itself
                    lease.settled, lease.renew_at = True, float("inf")
                    return
                self._failed(lease, exc)
                return
            except AzureError as exc:
                self._failed(lease, exc)
                return
            lease.pop_receipt = receipt.pop_receipt or lease.pop_receipt
            lease.renew_at = time.monotonic() + self._visibility * RENEW_AT_SHARE

    def _failed(self, lease: Lease, exc: Exception) -> None:
        logger.warning("renewing message %s on %s failed: %s", lease.message.id, self._queue.queue_name, exc,
                       extra={"queue": self._queue.queue_name, "message_id": lease.message.id})
        lease.renew_at = time.monotonic() + _RETRY_SECONDS
