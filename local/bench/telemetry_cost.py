"""(g) The cost of telemetry: per-lead time of the queue function and the host's peak memory, with the
Azure Monitor distro on (every trace kept, exported to a local stand-in for the ingestion service)
and off, side by side.

Per-lead time is measured in a fresh interpreter per mode, set up as the local host sets itself up
(its logging, then the distro, then the app), each message handed to `push_lead` inside the host's
invocation span, as the host hands it. Memory is the VmHWM of a local host that takes the same leads
end to end through the webhook.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

from local.bench import e2e, leads
from local.bench.report import Figure, Section, median, percentile
from local.bench.stack import WEBHOOK_SECRET, Stack
from local.services import LOG_DIR, REPO, tail

AIM_ADDED_P50_MS = 1.0
AIM_ADDED_MB = 30.0
MODES = ("off", "on")
PAGE = 32
ROUNDS = 2
IDLE_SECONDS = 10.0  # the timing run stops when the queue stays empty this long


def run(stack: Stack, *, count: int, host_leads: int, batch: int, connections: int) -> Section:
    """Raises ServiceError if a host does not start, RuntimeError if a timing run fails."""
    sink = _IngestionSink()
    try:
        timings: dict[str, list[float]] = {mode: [] for mode in MODES}
        for _ in range(ROUNDS):  # interleaved, so a slow moment of the machine hits both modes
            for mode in MODES:
                timings[mode] += _time_in_child(stack, mode, count, sink)
        hosts = {mode: _host_run(stack, mode, host_leads, batch, connections, sink) for mode in MODES}
    finally:
        sink.close()
    p50 = {mode: median(timings[mode]) for mode in MODES}
    p99 = {mode: percentile(timings[mode], 99) for mode in MODES}
    peak = {mode: hosts[mode][0] for mode in MODES}
    rate = {mode: hosts[mode][1] for mode in MODES}
    added_ms, added_mb = p50["on"] - p50["off"], peak["on"] - peak["off"]
    return Section(
        "g",
        f"cost of telemetry: {ROUNDS} x {count} leads timed in push_lead per mode, {host_leads} end "
        "to end through a host per mode",
        (
            Figure("push_lead p50, telemetry off / on", f"{p50['off']:.2f} / {p50['on']:.2f} ms"),
            Figure(
                "push_lead p50 added by telemetry",
                f"{added_ms:+.2f} ms",
                f"< {AIM_ADDED_P50_MS:g} ms",
                added_ms < AIM_ADDED_P50_MS,
            ),
            Figure("push_lead p99, telemetry off / on", f"{p99['off']:.2f} / {p99['on']:.2f} ms"),
            Figure("host VmHWM, telemetry off / on", f"{peak['off']:.0f} / {peak['on']:.0f} MB"),
            Figure(
                "host memory added by telemetry",
                f"{added_mb:+.0f} MB",
                f"< {AIM_ADDED_MB:g} MB",
                added_mb < AIM_ADDED_MB,
            ),
            Figure("end to end, telemetry off / on", f"{rate['off']:.0f} / {rate['on']:.0f} leads/s"),
        ),
        (
            f"telemetry on: every trace kept (OTEL_TRACES_SAMPLER=microsoft.fixed_percentage, 1.0); the stand-in "
            f"ingestion endpoint received {sink.posts} posts, {sink.bytes / 1e6:.1f} MB compressed",
        ),
    )


def _telemetry_env(mode: str, sink: _IngestionSink) -> dict[str, str]:
    if mode == "off":
        return {"PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "false"}
    return {
        "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true",
        "APPLICATIONINSIGHTS_CONNECTION_STRING": sink.connection_string,
        "OTEL_TRACES_SAMPLER": "microsoft.fixed_percentage",
        "OTEL_TRACES_SAMPLER_ARG": "1.0",
    }


def _time_in_child(stack: Stack, mode: str, count: int, sink: _IngestionSink) -> list[float]:
    ids = stack.company_ids(count + 1)
    env = {**os.environ, **stack.app_env(stack.dataverse("mvp")), **_telemetry_env(mode, sink)}
    log_path = LOG_DIR / f"bench-telemetry-{mode}-{os.getpid()}-{ids.start}.log"
    with open(log_path, "w") as log:  # the host's log lines, written as the host writes them
        result = subprocess.run(
            [sys.executable, "-m", "local.bench.telemetry_cost", "--first-company-id", str(ids.start),
             "--count", str(count + 1)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True,
        )
    if result.returncode != 0:
        raise RuntimeError(f"the timing run (telemetry {mode}) exited with {result.returncode}; its log: {log_path}\n"
                           f"{tail(log_path, 15)}")
    durations = json.loads(result.stdout.strip().splitlines()[-1])
    return durations[1:]  # the first pays for the token, the schema and the pools


def _host_run(
    stack: Stack, mode: str, count: int, batch: int, connections: int, sink: _IngestionSink
) -> tuple[float, float]:
    """(peak MB, leads/s) of a host taking `count` new leads end to end."""
    ids = stack.company_ids(count)
    batches = [[leads.lead(cid) for cid in ids[i : i + batch]] for i in range(0, count, batch)]
    env = stack.app_env(stack.dataverse("mvp"), **_telemetry_env(mode, sink))
    with stack.host(env) as host:
        started = time.perf_counter()
        sessions = threading.local()

        def post(body: list[dict]) -> None:
            if not hasattr(sessions, "session"):
                sessions.session = requests.Session()
            leads.post(sessions.session, host.url, body, secret=WEBHOOK_SECRET)

        with ThreadPoolExecutor(max_workers=connections) as pool:
            list(pool.map(post, batches))
        synced = e2e._wait_synced(stack, ids)
        elapsed = time.perf_counter() - started
        return e2e._peak_rss_mb(host.pid), synced / elapsed


class _IngestionSink:
    """Answers every track post with success, as the ingestion service does; keeps only counts."""

    def __init__(self) -> None:
        self.posts = 0
        self.bytes = 0
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.posts += 1
                sink.bytes += len(body)
                answer = b'{"itemsReceived": 0, "itemsAccepted": 0, "errors": []}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="ingestion-sink", daemon=True).start()

    @property
    def connection_string(self) -> str:
        host, port = self._server.server_address[:2]
        return f"InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=http://{host}:{port}/"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


# --- the timing run, in its own interpreter ------------------------------------------------------


def _child(first_company_id: int, count: int) -> list[float]:
    """Set up as the local host does, accept `count` new leads as the webhook does, then hand each
    message to push_lead inside the host's invocation span; ms per message."""
    import azure.functions.queue as func_queue

    from local.funchost.app_loader import load_functions
    from local.funchost.log_format import configure_logging
    from local.funchost.telemetry import configure_worker_telemetry, traced
    from shared.usecases.accept import accept_leads
    from shared.runtime.container import Container
    from shared.runtime.settings import Settings

    configure_logging()
    configure_worker_telemetry(os.environ)
    push = next(spec for spec in load_functions(REPO) if spec.name == "push_lead")
    container = Container(Settings.from_env(os.environ))
    ids = range(first_company_id, first_company_id + count)
    accept_leads(
        [leads.lead(cid) for cid in ids], store=container.store, queues=container.queues, received_at=datetime.now(UTC)
    )
    main = container.queues.main
    durations: list[float] = []
    idle_since = time.monotonic()
    while len(durations) < count and time.monotonic() - idle_since < IDLE_SECONDS:
        for message in main.receive_messages(messages_per_page=PAGE, max_messages=PAGE, visibility_timeout=300):
            idle_since = time.monotonic()
            argument = func_queue.QueueMessage(
                id=message.id,
                body=message.content.encode(),
                pop_receipt=message.pop_receipt,
                dequeue_count=message.dequeue_count,
            )
            started = time.perf_counter()
            traced(push, argument, lambda argument=argument: push.user_function(msg=argument))
            durations.append((time.perf_counter() - started) * 1000)
            main.delete_message(message.id, message.pop_receipt)
    return durations


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m local.bench.telemetry_cost")
    parser.add_argument("--first-company-id", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args()
    print(json.dumps(_child(args.first_company_id, args.count)))
