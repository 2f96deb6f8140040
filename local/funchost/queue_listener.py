"""Poll one queue for one queue-triggered function, with the WebJobs SDK's QueueProcessor semantics.

- Receive up to batchSize messages; run up to batchSize + newBatchThreshold invocations at once
  and receive the next batch when fewer than newBatchThreshold + 1 are in flight.
- Poll again within 100 ms after finding messages; when the queue is empty, double the wait up to
  maxPollingInterval.
- A message is received invisible for 60 s, renewed while its function runs (`message_lease`). The
  Functions host receives for 10 minutes and renews at half; the local host's lease is short so that
  a receive whose answer is lost hides its messages for a minute, not ten: Azurite (one Node thread)
  stalls for a minute and more under load, past the client's read timeout, and then still runs the
  receive the client gave up on. A receive is therefore not retried by the SDK either: the next poll
  asks again. FUNCHOST_MESSAGE_LEASE_SECONDS (a host setting for tests, not an app setting) sets the
  lease, so the messages of a host killed mid-run come back within seconds.
- Success: delete the message. Failure (an exception, a timeout, a body that is not base64):
  at maxDequeueCount copy it to `<queue>-poison` and delete it, else make it visible again after
  visibilityTimeout. A function that ran past functionTimeout restarts the worker (see `local_host`);
  where it cannot (an in-process host), its message stays leased until the abandoned thread ends, so
  the message never comes back while the first run is still going. A message already dequeued more
  than maxDequeueCount times goes to the poison queue without running.
- Deleting or updating a message the function already deleted or updated itself (its pop receipt
  changed) is not an error.
"""
from __future__ import annotations

import base64
import binascii
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import azure.functions.queue as func_queue
from azure.core.exceptions import AzureError, HttpResponseError, ResourceExistsError
from azure.storage.queue import LinearRetry, QueueClient

from shared.storage.queue import queue_client, storage_credential
from shared.storage.config import StorageConfig

from local.funchost.app_loader import FunctionSpec
from local.funchost.host_config import QueuesConfig
from local.funchost.invoker import FunctionTimeoutError, Invoker
from local.funchost.message_lease import GONE, Lease, LeaseKeeper
from local.funchost.telemetry import untraced, untraced_client

logger = logging.getLogger(__name__)

MIN_POLLING_INTERVAL = 0.1
RECEIVE_LEASE_SECONDS = 60
LEASE_OVERRIDE = "FUNCHOST_MESSAGE_LEASE_SECONDS"
# Storage is a local emulator: a few quick retries rather than the SDK's ~80 s of backoff, and every
# call bounded (the SDK waits a minute for an answer by default).
_CLIENT_OPTIONS = {
    "retry_policy": LinearRetry(backoff=0.5, random_jitter_range=0, retry_total=3),
    "connection_timeout": 5,
    "read_timeout": 30,
}


class QueueListener:
    def __init__(
        self,
        spec: FunctionSpec,
        *,
        queue_name: str,
        storage: StorageConfig,
        config: QueuesConfig,
        invoker: Invoker,
    ) -> None:
        self._spec = spec
        self._config = config
        self._invoker = invoker
        credential = storage_credential(storage)
        self._queue = untraced_client(queue_client(storage, queue_name, credential, **_CLIENT_OPTIONS))
        self._poison = untraced_client(queue_client(storage, f"{queue_name}-poison", credential, **_CLIENT_OPTIONS))
        self._leases = LeaseKeeper(self._queue, visibility_seconds=_receive_lease(), name=spec.name)
        self._pool = ThreadPoolExecutor(
            max_workers=config.batch_size + config.new_batch_threshold, thread_name_prefix=f"queue-{spec.name}"
        )
        self._in_flight = 0
        self._slots = threading.Condition()
        self._stopping = threading.Event()
        # The host's own storage calls are not the app's telemetry (in Azure, the .NET host makes them).
        self._thread = threading.Thread(target=untraced(self._poll_loop), name=f"poll-{spec.name}", daemon=True)

    @property
    def queue_name(self) -> str:
        return self._queue.queue_name

    def start(self) -> None:
        """Create the queue if missing and start polling. Raises AzureError when storage is unreachable."""
        _create_if_missing(self._queue)
        self._leases.start()
        self._thread.start()

    def request_stop(self) -> None:
        """Stop polling; messages already received are still handled."""
        self._stopping.set()
        with self._slots:
            self._slots.notify_all()

    def join(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for the messages in hand; False if some are still running."""
        deadline = time.monotonic() + timeout
        self._thread.join(timeout)  # a receive under way still hands its messages to the pool
        with self._slots:
            drained = self._slots.wait_for(lambda: self._in_flight == 0, max(0.0, deadline - time.monotonic()))
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._leases.stop()
        return drained

    def _poll_loop(self) -> None:
        delay = MIN_POLLING_INTERVAL
        while not self._stopping.is_set():
            with self._slots:
                self._slots.wait_for(
                    lambda: self._in_flight <= self._config.new_batch_threshold or self._stopping.is_set()
                )
            if self._stopping.is_set():
                return
            try:
                batch = self._receive()
            except AzureError as exc:
                logger.warning("receiving from %s failed: %s", self.queue_name, exc, extra={"queue": self.queue_name})
                batch = []
            except Exception:  # anything else must not end polling for good: the queue would look stuck
                logger.exception("receiving from %s failed", self.queue_name, extra={"queue": self.queue_name})
                batch = []
            for lease in batch:
                with self._slots:
                    self._in_flight += 1
                self._pool.submit(untraced(self._process), lease)
            delay = MIN_POLLING_INTERVAL if batch else min(delay * 2, self._config.max_polling_interval)
            self._stopping.wait(delay)

    def _receive(self) -> list[Lease]:
        pages = self._queue.receive_messages(
            messages_per_page=self._config.batch_size,
            max_messages=self._config.batch_size,
            visibility_timeout=self._leases.visibility_seconds,
            retry_total=0,
        ).by_page()
        return [self._leases.hold(message) for message in next(pages, [])]

    def _process(self, lease: Lease) -> None:
        try:
            self._handle(lease)
        except Exception:  # a storage failure must not kill the pool thread; the lease expires instead
            logger.exception("handling message %s from %s failed", lease.message.id, self.queue_name)
            self._leases.settle(lease)
        finally:
            with self._slots:
                self._in_flight -= 1
                self._slots.notify_all()

    def _handle(self, lease: Lease) -> None:
        message = lease.message
        context = {"queue": self.queue_name, "message_id": message.id, "dequeue_count": message.dequeue_count}
        if message.dequeue_count > self._config.max_dequeue_count:
            self._to_poison(lease, context)
            return
        try:
            body = self._decode(message.content)
            self._invoker.invoke(
                self._spec,
                func_queue.QueueMessage(
                    id=message.id,
                    body=body,
                    pop_receipt=message.pop_receipt,
                    dequeue_count=message.dequeue_count,
                    insertion_time=message.inserted_on,
                    expiration_time=message.expires_on,
                    time_next_visible=message.next_visible_on,
                ),
                reason=f"New queue message detected on '{self.queue_name}'.",
            )
        except FunctionTimeoutError as exc:
            logger.error("function %s timed out on message %s", self._spec.name, message.id, extra=context)
            exc.finished.wait()  # the lease is renewed meanwhile: the message comes back only after this run
            self._failed(lease, context)
        except Exception:
            logger.exception("function %s failed on message %s", self._spec.name, message.id, extra=context)
            self._failed(lease, context)
        else:
            receipt = self._leases.settle(lease)
            self._ignoring_gone(lambda: self._queue.delete_message(message.id, receipt), "delete", context)

    def _decode(self, content: str) -> bytes:
        if self._config.message_encoding == "none":
            return content.encode("utf-8")
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"message is not valid base64 (host.json messageEncoding is base64): {exc}") from exc

    def _failed(self, lease: Lease, context: dict[str, object]) -> None:
        if lease.message.dequeue_count >= self._config.max_dequeue_count:
            self._to_poison(lease, context)
            return
        receipt = self._leases.settle(lease)
        self._ignoring_gone(
            lambda: self._queue.update_message(
                lease.message.id, receipt, visibility_timeout=int(self._config.visibility_timeout)
            ),
            "release",
            context,
        )

    def _to_poison(self, lease: Lease, context: dict[str, object]) -> None:
        message = lease.message
        _create_if_missing(self._poison)
        self._poison.send_message(message.content)
        logger.warning(
            "message %s moved to %s after %s dequeues", message.id, self._poison.queue_name, message.dequeue_count,
            extra=context,
        )
        receipt = self._leases.settle(lease)
        self._ignoring_gone(lambda: self._queue.delete_message(message.id, receipt), "delete", context)

    def _ignoring_gone(self, action: Callable[[], object], what: str, context: dict[str, object]) -> None:
        try:
            action()
        except HttpResponseError as exc:
            if exc.error_code not in GONE:
                raise
            logger.debug("%s of message %s skipped: the function changed it (%s)", what, context["message_id"],
                         exc.error_code, extra=context)


def _receive_lease() -> int:
    override = os.environ.get(LEASE_OVERRIDE, "").strip()
    return max(1, int(override)) if override else RECEIVE_LEASE_SECONDS


def _create_if_missing(client: QueueClient) -> None:
    try:
        client.create_queue()
    except ResourceExistsError:
        pass
