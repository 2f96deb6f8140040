"""(f) End-to-end throughput with 10% of Dataverse requests answered 429 (Retry-After: 1)."""
from __future__ import annotations

from local.bench import e2e
from local.bench.report import Figure, Section
from local.bench.stack import Stack

FAULTS = {"rate_limit": 0.1, "retry_after": 1, "seed": 1}


def run(stack: Stack, *, count: int, batch: int, connections: int, baseline: e2e.EndToEnd | None) -> Section:
    emulator = stack.dataverse("mvp")
    emulator.control("POST", "faults", FAULTS)
    result = e2e.run(stack, emulator, count=count, batch=batch, connections=connections)
    statuses = result.dataverse_stats["status_counts"]
    figures = [
        Figure("end to end with 429s: all synced", f"{result.rate:.1f} leads/s ({result.seconds:.1f} s)"),
        Figure("429 answers / Dataverse requests", f"{statuses.get('429', 0)} / {result.dataverse_stats['requests']}"),
    ]
    if baseline is not None:
        figures.append(Figure("share of (c) without faults", f"{result.rate / baseline.rate:.0%}"))
    return Section("f", f"end to end, {count} leads, 10% of Dataverse requests throttled "
                        f"(faults {FAULTS})", tuple(figures), e2e.notes(result))
