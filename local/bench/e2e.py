"""Leads end to end through the local Functions host: signed webhook posts in, `synced` rows out."""
from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import requests

from local.bench import cpu, leads
from local.bench.stack import WEBHOOK_SECRET, Stack
from local.emulators.control_client import EmulatorControl

POLL_SECONDS = 0.2
STALL_SECONDS = 30.0  # no lead synced for this long: the run is given up


@dataclass(frozen=True)
class EndToEnd:
    count: int
    synced: int
    intake_seconds: float  # until every webhook post was answered
    seconds: float         # until every lead was synced (or the run was given up)
    peak_rss_mb: float     # the host's VmHWM
    dataverse_stats: dict  # the emulator's /_emulator/stats over the run
    cpu_seconds: dict[str, float]  # CPU time used during the run, by process

    @property
    def rate(self) -> float:
        return self.synced / self.seconds


def run(stack: Stack, emulator: EmulatorControl, *, count: int, batch: int, connections: int) -> EndToEnd:
    """Start a host, post `count` new leads in batches over `connections` connections, and wait
    until all are synced (or progress stalls). Raises ServiceError if the host does not start."""
    ids = stack.company_ids(count)
    batches = [[leads.lead(cid) for cid in ids[i:i + batch]] for i in range(0, count, batch)]
    with stack.host(stack.app_env(emulator)) as host:
        emulator.control("POST", "stats/reset")
        per_thread = threading.local()

        def post(body: list[dict]) -> None:
            if not hasattr(per_thread, "session"):
                per_thread.session = requests.Session()
            leads.post(per_thread.session, host.url, body, secret=WEBHOOK_SECRET)

        processes = {"host": host.pid, "Dataverse emulator": emulator.process.pid, "Azurite": stack.azurite.pid}
        cpu_before = _cpu(processes)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=connections) as pool:
            list(pool.map(post, batches))
        intake = time.perf_counter() - started
        synced = _wait_synced(stack, ids)
        elapsed = time.perf_counter() - started
        used = {name: seconds - cpu_before[name] for name, seconds in _cpu(processes).items()}
        peak = _peak_rss_mb(host.pid)
        stats = emulator.stats()
    return EndToEnd(count, synced, intake, elapsed, peak, stats, used)


def _cpu(processes: dict[str, int]) -> dict[str, float]:
    seconds = {name: cpu.process_seconds(pid) for name, pid in processes.items()}
    times = os.times()
    return seconds | {"PostgreSQL": cpu.postgres_seconds(), "benchmark client": times.user + times.system}


def _wait_synced(stack: Stack, ids: range) -> int:
    """Poll PostgreSQL until every lead is synced, or none got synced for a while."""
    synced, last_progress = 0, time.perf_counter()
    while synced < len(ids):
        time.sleep(POLL_SECONDS)
        now_synced = stack.synced_count(ids)
        if now_synced > synced:
            synced, last_progress = now_synced, time.perf_counter()
        elif time.perf_counter() - last_progress > STALL_SECONDS:
            break
    return synced


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


def notes(result: EndToEnd) -> tuple[str, ...]:
    """Where the run's CPU went, against the machine's capacity; and whether it stalled."""
    capacity = result.seconds * (os.cpu_count() or 1)
    used = ", ".join(f"{name} {s:.1f}" for name, s in sorted(result.cpu_seconds.items(), key=lambda i: -i[1]))
    cpu_note = (f"CPU seconds over the {result.seconds:.1f} s run ({capacity:.0f} available on {os.cpu_count()} "
                f"cores): {used}; total {sum(result.cpu_seconds.values()):.1f}")
    if result.synced == result.count:
        return (cpu_note,)
    return (cpu_note, f"only {result.synced} of {result.count} leads were synced; the run stalled")
