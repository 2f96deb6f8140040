"""`python -m local.bench [--only a,b,c,...,i] [--leads 1000] ...`: measure lead push on this machine.

Starts what it needs (Azurite, a throwaway PostgreSQL database, the Dataverse and identity
emulators, local Functions hosts) and stops it all at the end, also on Ctrl-C. Prints one table per
section, each figure next to its aim, and a summary. A section that fails (an error, a host that does
not start) is shown as failed and the others still run. Exits 0 whether or not aims are met, 1 when a
section failed (after the summary). The app's own logs go to .local/logs/bench-<pid>.log.

  a  import time of function_app vs its dependencies      d  Dataverse requests per lead
  b  time per lead in handle_delivery; mapping time       e  host peak memory during (c)
  c  end-to-end throughput vs Azurite's raw rate          f  throughput with 10% 429s
  g  cost of telemetry: per-lead time and host memory, on and off
  h  backfill: changed leads under scaled service-protection limits, bulk against single writes
  i  scale-out: 1, 2, 4 hosts through PgBouncer; server connections; 429s with and without shared back-off
  j  a CRM where people work (requests with 10% edited, the outcome reader) and the pause check's cost
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from local.bench import (
    backfill,
    dataverse_requests,
    delivery,
    faults,
    imports,
    living_crm,
    scaleout,
    telemetry_cost,
    throughput,
)
from local.bench.guard import failed_keys, guarded
from local.bench.report import Section, render, render_summary
from local.bench.stack import Stack, running_stack
from local.services import LOG_DIR, StopSignals, stop_children
from shared.observability.logging_setup import configure_logging

SECTIONS = "abcdefghij"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=SECTIONS, type=_sections, help="sections to run, e.g. a,c (default: all)")
    parser.add_argument("--leads", type=int, default=1000, help="leads end to end in (c) and Azurite messages")
    parser.add_argument("--batch", type=int, default=100, help="leads per webhook post in (c) and (f)")
    parser.add_argument("--connections", type=int, default=4, help="concurrent webhook posts in (c) and (f)")
    parser.add_argument("--delivery-leads", type=int, default=300, help="leads timed in (b)")
    parser.add_argument("--request-leads", type=int, default=100, help="leads per phase and configuration in (d)")
    parser.add_argument("--fault-leads", type=int, default=400, help="leads end to end in (f)")
    parser.add_argument("--import-runs", type=int, default=7, help="fresh interpreters per import measurement")
    parser.add_argument("--scaleout-leads", type=int, default=1000, help="leads per host count in (i)")
    parser.add_argument("--protected-leads", type=int, default=300,
                        help="leads per run in (i) with Dataverse limited to 8 concurrent requests")
    parser.add_argument("--telemetry-leads", type=int, default=300, help="leads timed per mode in (g)")
    parser.add_argument("--telemetry-host-leads", type=int, default=500, help="leads end to end per mode in (g)")
    parser.add_argument("--crm-leads", type=int, default=300, help="leads per mode in (j)")
    parser.add_argument("--crm-changed", type=int, default=10_000, help="leads changed in the CRM for (j)'s reader")
    parser.add_argument("--claims", type=int, default=500, help="claims timed per statement in (j)")
    backfill.add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        backfill_options = backfill.options(args)
    except ValueError as exc:
        parser.error(str(exc))

    log_path = _log_to_file()
    signals = StopSignals()  # Ctrl-C, `kill` or a closing terminal clean up, and a second one cannot stop that
    signals.install()
    started = time.perf_counter()
    done: list[Section] = []
    try:
        _run_sections(args, backfill_options, done)
    except KeyboardInterrupt:
        signals.cleaning_up()
        stop_children()
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    finally:
        signals.ignore()
    print(render_summary(done))
    print(f"whole run {time.perf_counter() - started:.0f} s; app logs in {log_path}")
    return 1 if failed_keys(done) else 0


def _run_sections(args: argparse.Namespace, backfill_options: backfill.Options, done: list[Section]) -> None:
    """Each chosen section in turn; one that fails is reported as failed and the others still run."""
    started: list[Stack] = []

    def section(key: str, measure: Callable[[], Sequence[Section]]) -> None:
        if key in args.only:
            for measured in guarded(key, measure, stack=started[0] if started else None):
                done.append(measured)
                print(render(measured) + "\n", flush=True)

    section("a", lambda: [imports.run(runs=args.import_runs)])
    if not set(args.only) - {"a"}:
        return
    with running_stack() as s:
        started.append(s)
        batch, connections = args.batch, args.connections
        section("b", lambda: [delivery.run(s, count=args.delivery_leads)])
        section("d", lambda: [dataverse_requests.run(s, count=args.request_leads)])
        baseline: list[Any] = [None]  # (c)'s run, for (f)

        def throughput_sections() -> list[Section]:
            measured, memory, baseline[0] = throughput.run(s, count=args.leads, batch=batch, connections=connections)
            return [m for m in (measured, memory) if m.key in args.only]

        section("c" if "c" in args.only else "e", throughput_sections)
        section("f", lambda: [faults.run(s, count=args.fault_leads, batch=batch, connections=connections,
                                         baseline=baseline[0])])
        section("g", lambda: [telemetry_cost.run(s, count=args.telemetry_leads, host_leads=args.telemetry_host_leads,
                                                 batch=batch, connections=connections)])
        section("i", lambda: [scaleout.run(s, count=args.scaleout_leads, protected_count=args.protected_leads,
                                           batch=batch, connections=connections)])
        section("h", lambda: [backfill.run(s, backfill_options)])
        section("j", lambda: [living_crm.run(s, count=args.crm_leads, changed_in_crm=args.crm_changed,
                                             claims=args.claims)])


def _sections(value: str) -> str:
    chosen = "".join(part.strip() for part in value.split(","))
    if not chosen or set(chosen) - set(SECTIONS):
        raise argparse.ArgumentTypeError(f"choose from {','.join(SECTIONS)}, got {value!r}")
    return chosen


def _log_to_file() -> str:
    """The app logs (in-process measurements) and ours go to a file, as the host's go to its log."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    path = LOG_DIR / f"bench-{os.getpid()}.log"
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.getLogger().addHandler(handler)
    configure_logging()
    return str(path)


if __name__ == "__main__":
    sys.exit(main())
