"""Poll one queue for one queue-triggered function, with the WebJobs SDK's QueueProcessor semantics.

- Receive up to batchSize messages; run up to batchSize + newBatchThreshold invocations at once
  and receive the next batch when fewer than newBatchThreshold + 1 are in flight.
- Poll again within 100 ms after finding messages; when the queue is empty, double the wait up to
  maxPollingInterval.
- A message is received with a lease of 10 minutes (longer when functionTimeout is longer). The
  real host renews that lease while the function runs; here functionTimeout bounds the invocation
  instead, so without a functionTimeout a function running past the lease may see its message
  delivered a second time. The environment variable FUNCHOST_MESSAGE_LEASE_SECONDS (a host
  setting for tests, not an app setting) shortens the lease, so the messages of a host killed
  mid-run come back within seconds, as they would in Azure after 10 minutes.
- Success: delete the message. Failure (an exception, a timeout, a body that is not base64):
  at maxDequeueCount copy it to `<queue>-poison` and delete it, else make it visible again after
  visibilityTimeout. A message already dequeued more than maxDequeueCount times goes to the
  poison queue without running.
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
from azure.storage.queue import LinearRetry, QueueClient, QueueMessage, StorageErrorCode

from shared.storage.queue import queue_client, storage_credential
from shared.storage.config import StorageConfig

from local.funchost.app_loader import FunctionSpec
from local.funchost.host_config import QueuesConfig
from local.funchost.invoker import Invoker
from local.funchost.telemetry import untraced, untraced_client

logger = logging.getLogger(__name__)

MIN_POLLING_INTERVAL = 0.1
RECEIVE_LEASE_SECONDS = 600
LEASE_OVERRIDE = "FUNCHOST_MESSAGE_LEASE_SECONDS"
# Storage is a local emulator: a few quick retries rather than the SDK's ~80 s of backoff.
_RETRY = {"retry_policy": LinearRetry(backoff=0.5, random_jitter_range=0, retry_total=3)}
_GONE = (StorageErrorCode.MESSAGE_NOT_FOUND, StorageErrorCode.POP_RECEIPT_MISMATCH)


class QueueListener:
    def __init__(
        self,
        spec: FunctionSpec,
        *,
        queue_name: str,
        storage: StorageConfig,
        config: QueuesConfig,
        invoker: Invoker,
        function_timeout: float | None,
    ) -> None:
        self._spec = spec
        self._config = config
        self._invoker = invoker
        self._lease = _receive_lease(function_timeout)
        credential = storage_credential(storage)
        self._queue = untraced_client(queue_client(storage, queue_name, credential, **_RETRY))
        self._poison = untraced_client(queue_client(storage, f"{queue_name}-poison", credential, **_RETRY))
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
            for message in batch:
                with self._slots:
                    self._in_flight += 1
                self._pool.submit(untraced(self._process), message)
            delay = MIN_POLLING_INTERVAL if batch else min(delay * 2, self._config.max_polling_interval)
            self._stopping.wait(delay)

    def _receive(self) -> list[QueueMessage]:
        pages = self._queue.receive_messages(
            messages_per_page=self._config.batch_size,
            max_messages=self._config.batch_size,
            visibility_timeout=self._lease,
        ).by_page()
        return list(next(pages, []))

    def _process(self, message: QueueMessage) -> None:
        try:
            self._handle(message)
        except Exception:  # a storage failure must not kill the pool thread; the lease expires instead
            logger.exception("handling message %s from %s failed", message.id, self.queue_name)
        finally:
            with self._slots:
                self._in_flight -= 1
                self._slots.notify_all()

    def _handle(self, message: QueueMessage) -> None:
        context = {"queue": self.queue_name, "message_id": message.id, "dequeue_count": message.dequeue_count}
        if message.dequeue_count > self._config.max_dequeue_count:
            self._to_poison(message, context)
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
        except Exception:
            logger.exception("function %s failed on message %s", self._spec.name, message.id, extra=context)
            self._failed(message, context)
        else:
            self._ignoring_gone(lambda: self._queue.delete_message(message.id, message.pop_receipt), "delete", context)

    def _decode(self, content: str) -> bytes:
        if self._config.message_encoding == "none":
            return content.encode("utf-8")
        try:
            return base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(f"message is not valid base64 (host.json messageEncoding is base64): {exc}") from exc

    def _failed(self, message: QueueMessage, context: dict[str, object]) -> None:
        if message.dequeue_count >= self._config.max_dequeue_count:
            self._to_poison(message, context)
            return
        self._ignoring_gone(
            lambda: self._queue.update_message(
                message.id, message.pop_receipt, visibility_timeout=int(self._config.visibility_timeout)
            ),
            "release",
            context,
        )

    def _to_poison(self, message: QueueMessage, context: dict[str, object]) -> None:
        _create_if_missing(self._poison)
        self._poison.send_message(message.content)
        logger.warning(
            "message %s moved to %s after %s dequeues", message.id, self._poison.queue_name, message.dequeue_count,
            extra=context,
        )
        self._ignoring_gone(lambda: self._queue.delete_message(message.id, message.pop_receipt), "delete", context)

    def _ignoring_gone(self, action: Callable[[], object], what: str, context: dict[str, object]) -> None:
        try:
            action()
        except HttpResponseError as exc:
            if exc.error_code not in _GONE:
                raise
            logger.debug("%s of message %s skipped: the function changed it (%s)", what, context["message_id"],
                         exc.error_code, extra=context)


def _receive_lease(function_timeout: float | None) -> int:
    override = os.environ.get(LEASE_OVERRIDE, "").strip()
    if override:
        return max(1, int(override))
    return int(max(RECEIVE_LEASE_SECONDS, (function_timeout or 0) + 30))


def _create_if_missing(client: QueueClient) -> None:
    try:
        client.create_queue()
    except ResourceExistsError:
        pass
