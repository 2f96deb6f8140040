"""(c) End-to-end throughput through the local host, next to Azurite's raw rate; (e) the host's peak memory."""
from __future__ import annotations

import secrets
import time

from azure.storage.queue import QueueClient

from local.bench import e2e, leads
from local.bench.report import Figure, Section
from local.bench.stack import Stack

AIM_SHARE_OF_RAW = 0.6
AIM_PEAK_MB = 200.0
AIM_METADATA_REQUESTS = 10  # "a handful" per 1,000 leads
PAGE = 32


def run(stack: Stack, *, count: int, batch: int, connections: int) -> tuple[Section, Section, e2e.EndToEnd]:
    send_s, drain_s = _azurite_raw(stack, count)
    raw_rate = count / (send_s + drain_s)
    result = e2e.run(stack, stack.dataverse("mvp"), count=count, batch=batch, connections=connections)
    share = result.rate / raw_rate
    metadata = result.dataverse_stats["by_kind"]["metadata"] * 1000 / count
    throughput = Section("c", f"end to end, {count} leads: webhook ({batch} per post, {connections} connections) "
                              "-> queue -> host -> Dataverse emulator -> synced", (
        Figure("Azurite raw: send", f"{count / send_s:.0f} msg/s"),
        Figure("Azurite raw: receive (pages of 32) + delete", f"{count / drain_s:.0f} msg/s"),
        Figure("Azurite raw: send + receive + delete", f"{raw_rate:.0f} msg/s"),
        Figure("webhook intake (all posts answered)", f"{count / result.intake_seconds:.0f} leads/s"),
        Figure("end to end: all synced", f"{result.rate:.1f} leads/s ({result.seconds:.1f} s)"),
        Figure("end to end / Azurite raw", f"{share:.0%}", f">= {AIM_SHARE_OF_RAW:.0%}", share >= AIM_SHARE_OF_RAW),
        Figure("Dataverse metadata requests / 1,000 leads", f"{metadata:.0f}", f"<= {AIM_METADATA_REQUESTS}",
               metadata <= AIM_METADATA_REQUESTS),
    ), e2e.notes(result))
    memory = Section("e", "peak memory of the host process during (c)", (
        Figure("host VmHWM", f"{result.peak_rss_mb:.0f} MB", f"< {AIM_PEAK_MB:g} MB", result.peak_rss_mb < AIM_PEAK_MB),
    ))
    return throughput, memory, result


def _azurite_raw(stack: Stack, count: int) -> tuple[float, float]:
    """One client: send `count` lead-sized messages, then receive them in pages and delete each."""
    client = QueueClient.from_connection_string(stack.storage, f"bench-raw-{secrets.token_hex(4)}")
    client.create_queue()
    try:
        texts = leads.wire(leads.lead(cid) for cid in range(count))
        started = time.perf_counter()
        for text in texts:
            client.send_message(text)
        sent = time.perf_counter()
        received = 0
        while received < count:
            for message in client.receive_messages(messages_per_page=PAGE, max_messages=PAGE):
                client.delete_message(message.id, message.pop_receipt)
                received += 1
        return sent - started, time.perf_counter() - sent
    finally:
        client.delete_queue()
        client.close()
