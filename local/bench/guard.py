"""Run one bench section so that its failure is reported, not fatal, and say what it left in Azurite.

A section that raises becomes a section of one unmet figure, "section completed", with the error;
its traceback goes to the bench log. Every section ends with a note of the messages left in Azurite
(leftovers slow Azurite down for the sections after it: it looks through every message of the account
on each receive).
"""
from __future__ import annotations

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
    return sections


def failed_keys(sections: Sequence[Section]) -> set[str]:
    return {s.key for s in sections for f in s.figures if f.name == COMPLETED and not f.met}


def azurite_state(connection_string: str) -> str:
    """How many messages (visible or not) Azurite holds, in how many queues."""
    service = QueueServiceClient.from_connection_string(connection_string)
    try:
        counts = []
        for queue in service.list_queues():
            try:
                counts.append(service.get_queue_client(queue.name).get_queue_properties().approximate_message_count)
            except ResourceNotFoundError:
                continue
        return f"Azurite afterwards: {sum(c or 0 for c in counts)} messages in {len(counts)} queues"
    except AzureError as exc:
        return f"Azurite afterwards: not reachable ({type(exc).__name__})"
    finally:
        service.close()
