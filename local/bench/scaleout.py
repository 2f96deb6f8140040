"""(i) Scale-out: end-to-end throughput with 1, 2 and 4 local hosts on one queue through PgBouncer in
transaction mode, PostgreSQL server connections at peak, and 429 answers per 1,000 leads with the
Dataverse emulator limited to 8 concurrent requests, with and without the shared back-off."""
from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import psycopg2
import requests

from local import services
from local.bench import leads
from local.bench.guard import drop_queues
from local.bench.report import Figure, Section
from local.bench.stack import WEBHOOK_SECRET, Stack

HOST_COUNTS = (1, 2, 4)
PROTECTED_HOSTS = 4
CONCURRENCY = {"max_concurrent": 8}
# For context, no aim: a limit on requests per window, where a 429 says how long the window stays shut.
WINDOW = {"requests_per_window": 100, "window_seconds": 5}
# Requests that take as long as a real Dataverse's, so that concurrency builds up at all.
PROTECTED_FAULTS = {"latency_ms": 100}
# One push per message, the protocol of issue 9; bulk writes (issue 12) have their own section.
APP_SETTINGS = {"D365_BULK_SIZE": "1"}
BOUNCER_POOL_SIZE = 50  # Azure's built-in PgBouncer's default: large enough not to hide the app's own bound
ROUNDS = 2  # the 429 counts of one run vary by half: each mode runs this often, interleaved, and is summed
AIM_CONNECTIONS_PER_HOST = 4
AIM_BACKOFF_SHARE = 0.5
SAMPLE_SECONDS = 0.1
STALL_SECONDS = 30.0  # no lead synced for this long: the run is given up
OBSERVER = "bench-observer"
_SERVER_BACKENDS = """
    SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend'
      AND pid <> pg_backend_pid() AND application_name IS DISTINCT FROM %(observer)s
"""


@dataclass(frozen=True)
class Run:
    hosts: int
    count: int
    synced: int
    seconds: float
    peak_server_connections: int
    dataverse_stats: dict[str, Any]
    unavailable: int = 0  # webhook posts answered 503 (and posted again)

    @property
    def rate(self) -> float:
        return self.synced / self.seconds

    @property
    def throttled_per_1000(self) -> float:
        return self.dataverse_stats["status_counts"].get("429", 0) * 1000 / self.count


def run(stack: Stack, *, count: int, protected_count: int, batch: int, connections: int) -> Section:
    def protected(limits: dict[str, float], shared_backoff: bool) -> Run:
        return _run(stack, database_url, hosts=PROTECTED_HOSTS, count=protected_count, batch=batch,
                    connections=connections, protection=limits, shared_backoff=shared_backoff)

    with _pgbouncer(stack) as database_url:
        plain = [_run(stack, database_url, hosts=n, count=count, batch=batch, connections=connections)
                 for n in HOST_COUNTS]
        rounds = [(protected(CONCURRENCY, True), protected(CONCURRENCY, False)) for _ in range(ROUNDS)]
        shared, alone = (_combined([r[mode] for r in rounds]) for mode in (0, 1))
        window_shared, window_alone = protected(WINDOW, True), protected(WINDOW, False)

    one, most = plain[0], plain[-1]
    figures = [Figure(f"{r.hosts} host(s): all synced", f"{r.rate:.1f} leads/s ({r.seconds:.1f} s)") for r in plain]
    figures.append(Figure(f"{most.hosts} hosts / 1 host", f"{most.rate / one.rate:.0%}", ">= 100%",
                          most.rate >= one.rate))
    labelled = [(f"{r.hosts} host(s)", r) for r in plain] + [
        ("8 concurrent, shared back-off", shared), ("8 concurrent, without", alone),
        ("request window, shared back-off", window_shared), ("request window, without", window_alone)]
    for label, r in labelled:
        bound = AIM_CONNECTIONS_PER_HOST * r.hosts
        figures.append(Figure(f"{label}: peak server connections", str(r.peak_server_connections),
                              f"<= {bound}", r.peak_server_connections <= bound))
    limit = AIM_BACKOFF_SHARE * alone.throttled_per_1000
    figures += [
        Figure("8 concurrent, without shared back-off: 429s / 1,000 leads", f"{alone.throttled_per_1000:.0f}"),
        Figure("8 concurrent, with shared back-off: 429s / 1,000 leads", f"{shared.throttled_per_1000:.0f}",
               f"<= {limit:.0f} (half)", shared.throttled_per_1000 <= limit),
        Figure("8 concurrent: throughput with / without shared back-off",
               f"{shared.rate:.1f} / {alone.rate:.1f} leads/s"),
        Figure("request window: 429s / 1,000 leads with / without shared back-off",
               f"{window_shared.throttled_per_1000:.0f} / {window_alone.throttled_per_1000:.0f}"),
        Figure("request window: throughput with / without shared back-off",
               f"{window_shared.rate:.1f} / {window_alone.rate:.1f} leads/s"),
    ]
    notes = [f"PgBouncer in transaction mode, default_pool_size {BOUNCER_POOL_SIZE}; hosts with the default "
             f"DATABASE_POOL_MAX and {APP_SETTINGS}; server connections sampled from pg_stat_activity "
             f"every {SAMPLE_SECONDS * 1000:.0f} ms",
             f"429 runs: {PROTECTED_HOSTS} hosts, {protected_count} leads each, emulator faults {PROTECTED_FAULTS}; "
             f"protection '8 concurrent' {CONCURRENCY} ({ROUNDS} rounds per mode, summed), "
             f"'request window' {WINDOW}"]
    notes += [f"{label}: only {r.synced} of {r.count} leads were synced; the run stalled"
              for label, r in labelled if r.synced < r.count]
    notes += [f"{label}: {r.unavailable} webhook posts answered 503 and were posted again after Retry-After"
              for label, r in labelled if r.unavailable]
    return Section("i", f"scale-out through PgBouncer, {count} leads per host count", tuple(figures), tuple(notes))


def _combined(runs: list[Run]) -> Run:
    """Several runs of one configuration as one: counts and times summed, the peak the largest."""
    statuses: dict[str, int] = {}
    for r in runs:
        for status, n in r.dataverse_stats["status_counts"].items():
            statuses[status] = statuses.get(status, 0) + n
    return Run(runs[0].hosts, sum(r.count for r in runs), sum(r.synced for r in runs),
               sum(r.seconds for r in runs), max(r.peak_server_connections for r in runs),
               {"status_counts": statuses}, sum(r.unavailable for r in runs))


@contextmanager
def _pgbouncer(stack: Stack) -> Iterator[str]:
    """The bench database's URL through a PgBouncer of its own, stopped on the way out."""
    parts = urlsplit(stack.database_url)
    bouncer = services.start_pgbouncer(services.with_database(stack.database_url, "postgres"),
                                       default_pool_size=BOUNCER_POOL_SIZE)
    try:
        yield bouncer.database_url(parts.path.lstrip("/"))
    finally:
        bouncer.stop()


def _run(stack: Stack, database_url: str, *, hosts: int, count: int, batch: int, connections: int,
         protection: dict[str, float] | None = None, shared_backoff: bool = True) -> Run:
    """Start `hosts` hosts on one new queue, post `count` new leads spread over their webhooks, and
    wait until all are synced (or progress stalls), sampling PostgreSQL's server connections."""
    emulator = stack.dataverse("mvp")
    if protection:
        emulator.set_protection(**protection)
        emulator.set_faults(**PROTECTED_FAULTS)
    env = stack.app_env(emulator, DATABASE_URL=database_url, DATAVERSE_SHARED_BACKOFF=str(shared_backoff).lower(),
                        **APP_SETTINGS)
    ids = stack.company_ids(count)
    batches = [[leads.lead(cid) for cid in ids[i:i + batch]] for i in range(0, count, batch)]
    observer = psycopg2.connect(stack.database_url, application_name=OBSERVER)
    observer.autocommit = True
    try:
        _cut_server_connections(observer)  # start from none: PgBouncer keeps idle ones from the last run
        with ExitStack() as started:
            urls = [started.enter_context(stack.host(env)).url for _ in range(hosts)]
            emulator.control("POST", "stats/reset")
            peak = _Peak(stack.database_url)
            with peak:
                began = time.perf_counter()
                unavailable = _post(urls, batches, connections)
                synced = _wait_synced(observer, ids)
                seconds = time.perf_counter() - began
            stats = emulator.stats()
        return Run(hosts, count, synced, seconds, peak.value, stats, unavailable)
    finally:
        if protection:
            emulator.clear_protection()
            emulator.clear_faults()
        observer.close()
        drop_queues(stack.storage)  # messages in hand when the hosts stopped would slow the next run


def _post(urls: list[str], batches: list[list[dict[str, Any]]], connections: int) -> int:
    """Post the batches spread over the hosts; how many posts were answered 503 (and posted again)."""
    per_thread = threading.local()

    def post(numbered: tuple[int, list[dict[str, Any]]]) -> int:
        n, body = numbered
        if not hasattr(per_thread, "session"):
            per_thread.session = requests.Session()
        return leads.post(per_thread.session, urls[n % len(urls)], body, secret=WEBHOOK_SECRET)

    with ThreadPoolExecutor(max_workers=connections) as pool:
        return sum(pool.map(post, enumerate(batches)))


def _wait_synced(conn: Any, ids: range) -> int:
    synced, last_progress = 0, time.perf_counter()
    while synced < len(ids):
        time.sleep(0.2)
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM lead_sync WHERE status = 'synced' AND company_id BETWEEN %s AND %s",
                        (ids.start, ids.stop - 1))
            now_synced = cur.fetchone()[0]
        if now_synced > synced:
            synced, last_progress = now_synced, time.perf_counter()
        elif time.perf_counter() - last_progress > STALL_SECONDS:
            break
    return synced


def _server_connections(conn: Any) -> int:
    with conn.cursor() as cur:
        cur.execute(_SERVER_BACKENDS, {"observer": OBSERVER})
        return len(cur.fetchall())


def _cut_server_connections(conn: Any) -> None:
    with conn.cursor() as cur:
        cur.execute(f"SELECT pg_terminate_backend(pid) FROM ({_SERVER_BACKENDS}) AS s", {"observer": OBSERVER})


class _Peak:
    """The largest value of PostgreSQL's server connections, sampled on a thread of its own."""

    def __init__(self, database_url: str) -> None:
        self.value = 0
        self._url = database_url
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="bench-peak", daemon=True)

    def __enter__(self) -> _Peak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def _sample(self) -> None:
        conn = psycopg2.connect(self._url, application_name=OBSERVER)
        conn.autocommit = True
        try:
            while not self._stop.wait(SAMPLE_SECONDS):
                self.value = max(self.value, _server_connections(conn))
        finally:
            conn.close()
