"""`python -m local.bench [--only a,b,c,...,i] [--leads 1000] ...`: measure lead push on this machine.

Starts what it needs (Azurite, a throwaway PostgreSQL database, the Dataverse and identity
emulators, local Functions hosts) and stops it all at the end, also on Ctrl-C. Prints one table per
section, each figure next to its aim, and a summary. Exits 0 whether or not aims are met; non-zero
only when the benchmark itself fails. The app's own logs go to .local/logs/bench-<pid>.log.

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
import signal
import sys
import time

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
from local.bench.report import Section, render, render_summary
from local.bench.stack import running_stack
from local.services import LOG_DIR
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
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` cleans up like Ctrl-C
    started = time.perf_counter()
    done: list[Section] = []

    def show(section: Section) -> None:
        done.append(section)
        print(render(section) + "\n", flush=True)

    try:
        if "a" in args.only:
            show(imports.run(runs=args.import_runs))
        if set(args.only) - {"a"}:
            with running_stack() as stack:
                if "b" in args.only:
                    show(delivery.run(stack, count=args.delivery_leads))
                if "d" in args.only:
                    show(dataverse_requests.run(stack, count=args.request_leads))
                baseline = None
                if {"c", "e"} & set(args.only):
                    measured, memory, baseline = throughput.run(
                        stack, count=args.leads, batch=args.batch, connections=args.connections)
                    for section in (measured, memory):
                        if section.key in args.only:
                            show(section)
                if "f" in args.only:
                    show(faults.run(stack, count=args.fault_leads, batch=args.batch, connections=args.connections,
                                    baseline=baseline))
                if "g" in args.only:
                    show(telemetry_cost.run(stack, count=args.telemetry_leads, host_leads=args.telemetry_host_leads,
                                            batch=args.batch, connections=args.connections))
                if "i" in args.only:
                    show(scaleout.run(stack, count=args.scaleout_leads, protected_count=args.protected_leads,
                                      batch=args.batch, connections=args.connections))
                if "h" in args.only:
                    show(backfill.run(stack, backfill_options))
                if "j" in args.only:
                    show(living_crm.run(stack, count=args.crm_leads, changed_in_crm=args.crm_changed,
                                        claims=args.claims))
    except KeyboardInterrupt:
        print("interrupted; everything started was stopped", file=sys.stderr)
        return 130
    print(render_summary(done))
    print(f"whole run {time.perf_counter() - started:.0f} s; app logs in {log_path}")
    return 0


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
