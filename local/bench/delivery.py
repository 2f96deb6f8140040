"""(b) Time per lead inside the queue function, in this process, and the pure mapping time."""
from __future__ import annotations

import time
from datetime import UTC, datetime

from d365.mapping import map_lead
from d365.metadata import LeadSchema
from local.bench import leads
from local.bench.report import Figure, Section, median, percentile
from local.bench.stack import Stack
from shared.runtime.container import Container
from shared.usecases.accept import accept_leads
from shared.usecases.delivery import Delivery, handle_delivery

AIM_P50_MS = 10.0
AIM_P99_MS = 50.0
MAPPING_CALLS = 20_000
PAGE = 32


def run(stack: Stack, *, count: int) -> Section:
    """Accepts `count` new leads (plus one to warm up) as the webhook does, and hands each message to
    handle_delivery."""
    with stack.container(stack.app_env(stack.dataverse("mvp"))) as container:
        accept_leads([leads.lead(cid) for cid in stack.company_ids(count + 1)], store=container.store,
                     queues=container.queues, received_at=datetime.now(UTC))
        durations = _deliver_all(container)
        mvp_schema = container.dataverse.read_lead_schema()
    with stack.container(stack.app_env(stack.dataverse("full"))) as container:
        full_schema = container.dataverse.read_lead_schema()
    first, warm = durations[0], durations[1:]
    p50, p99 = median(warm), percentile(warm, 99)
    return Section("b", f"per-lead time in handle_delivery, {len(warm)} new leads, in process", (
        Figure("first delivery (token, schema, DB pool)", f"{first:.1f} ms"),
        Figure("handle_delivery p50", f"{p50:.1f} ms", f"<= {AIM_P50_MS:g} ms", p50 <= AIM_P50_MS),
        Figure("handle_delivery p99", f"{p99:.1f} ms", f"<= {AIM_P99_MS:g} ms", p99 <= AIM_P99_MS),
        Figure("handle_delivery max", f"{max(warm):.1f} ms"),
        Figure("map_lead median, mvp schema", f"{_mapping_us(mvp_schema):.1f} µs"),
        Figure("map_lead median, full schema", f"{_mapping_us(full_schema):.1f} µs"),
    ))


def _deliver_all(container: Container) -> list[float]:
    """Receive every message (pages of 32), handle each as the trigger would; ms per call."""
    settings = container.settings
    main = container.queues.main
    durations: list[float] = []
    while True:
        page = list(main.receive_messages(messages_per_page=PAGE, max_messages=PAGE, visibility_timeout=300))
        if not page:
            return durations
        for message in page:
            delivery = Delivery(body=message.content.encode(), message_id=message.id,
                                pop_receipt=message.pop_receipt, dequeue_count=message.dequeue_count)
            started = time.perf_counter()
            handle_delivery(delivery, pusher=container.pusher, queues=container.queues, store=container.store,
                            backoff_base_seconds=1, max_dequeue_count=settings.queue_runtime.max_dequeue_count)
            durations.append((time.perf_counter() - started) * 1000)
            main.delete_message(message.id, message.pop_receipt)


def _mapping_us(schema: LeadSchema) -> float:
    sample = [leads.lead(cid) for cid in range(100)]
    times = []
    for i in range(MAPPING_CALLS):
        lead = sample[i % len(sample)]
        started = time.perf_counter_ns()
        map_lead(lead, schema)
        times.append(time.perf_counter_ns() - started)
    return median(times) / 1000
