"""Run one bench section so that its failure is reported, not fatal, and leave Azurite empty after it.

A section that raises becomes a section of one unmet figure, "section completed", with the error;
its traceback goes to the bench log. Every section ends with a note of the messages it left in
Azurite, and then every queue is deleted: Azurite looks through every message of the account on each
receive and delete (receive + delete ran at 206 msg/s with none left elsewhere, 95 with 1,000, 31 with
3,000, 7 with 6,000 on this machine), so one section's leftovers (messages of leads a bulk push already
wrote, poison messages, messages in hand when a host stopped) slowed every section after it.
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.storage.queue import QueueServiceClient

from local.bench.report import Figure, Section
from local.bench.stack import Stack

logger = logging.getLogger(__name__)

COMPLETED = "section completed"


def guarded(key: str, measure: Callable[[], Sequence[Section]], *, stack: Stack | None) -> list[Section]:
    """`measure()`'s sections, or one failed section for `key`; each with a note on Azurite's state."""
    try:
        sections = list(measure())
    except Exception as exc:  # any failure of a section is reported, and the run goes on
        logger.exception("bench section (%s) failed", key)
        sections = [Section(key, "failed", (Figure(COMPLETED, f"no: {type(exc).__name__}", "yes", False),),
                            (f"{type(exc).__name__}: {str(exc)[:500]}", "its traceback is in the bench log"))]
    if stack is not None and sections:
        note = azurite_state(stack.storage)
        logger.info("after section (%s): %s", key, note)
        sections[-1] = replace(sections[-1], notes=(*sections[-1].notes, note))
        drop_queues(stack.storage)
    return sections


def failed_keys(sections: Sequence[Section]) -> set[str]:
    return {s.key for s in sections for f in s.figures if f.name == COMPLETED and not f.met}


def drop_queues(connection_string: str) -> None:
    """Delete every queue; each section makes its own."""
    service = QueueServiceClient.from_connection_string(connection_string)
    try:
        for queue in service.list_queues():
            with contextlib.suppress(ResourceNotFoundError):
                service.delete_queue(queue.name)
    except AzureError:
        logger.exception("could not empty Azurite")
    finally:
        service.close()


def azurite_state(connection_string: str) -> str:
    """How many messages (visible or not) Azurite holds, in how many queues."""
    service = QueueServiceClient.from_connection_string(connection_string)
    try:
        counts: dict[str, int] = {}
        for queue in service.list_queues():
            try:
                properties = service.get_queue_client(queue.name).get_queue_properties()
            except ResourceNotFoundError:
                continue
            counts[queue.name] = properties.approximate_message_count or 0
        held = ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda i: -i[1]) if n)
        return (f"Azurite afterwards: {sum(counts.values())} messages in {len(counts)} queues"
                + (f" ({held})" if held else ""))
    except AzureError as exc:
        return f"Azurite afterwards: not reachable ({type(exc).__name__})"
    finally:
        service.close()
