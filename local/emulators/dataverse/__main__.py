"""`python -m local.emulators.dataverse --host 127.0.0.1 --port 0 [--profile mvp|full|bare]
[--alternate-key COLUMN] [--resource URL] [--no-bulk] [--max-page-size N] [--requests-per-window N --window-seconds S
--execution-ms-per-window MS --max-concurrent N --execution-ms-per-record MS]` prints
`ready http://127.0.0.1:<port>` once listening."""
from __future__ import annotations

import argparse

from local.emulators.dataverse.protection import Limits
from local.emulators.dataverse.queryoptions import MAX_PAGE_SIZE
from local.emulators.dataverse.schema import PROFILES
from local.emulators.dataverse.server import DEFAULT_TENANT_ID, serve
from local.emulators.httpserver import run_until_signalled


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m local.emulators.dataverse", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="mvp")
    parser.add_argument("--alternate-key", metavar="COLUMN", help="define an Active alternate key on COLUMN")
    parser.add_argument("--resource", help="the token audience accepted (default: this server's base URL)")
    parser.add_argument("--tenant-id", default=DEFAULT_TENANT_ID, help="the tenant named in 401 challenges")
    parser.add_argument("--no-bulk", action="store_true",
                        help="answer as an org without CreateMultiple/UpdateMultiple/UpsertMultiple for lead")
    parser.add_argument("--max-page-size", type=int, default=MAX_PAGE_SIZE, metavar="N",
                        help="the server's largest page of a query (Dataverse's is 5000; lower it to exercise paging)")
    limits = parser.add_argument_group("service protection limits per user (0 = off; docs/dataverse.md 6)")
    limits.add_argument("--requests-per-window", type=int, default=0, metavar="N")
    limits.add_argument("--execution-ms-per-window", type=int, default=0, metavar="MS")
    limits.add_argument("--max-concurrent", type=int, default=0, metavar="N")
    limits.add_argument("--window-seconds", type=float, default=300.0, metavar="S")
    limits.add_argument("--execution-ms-per-record", type=float, default=0.0, metavar="MS",
                        help="execution time counted per record written or inner $batch request")
    args = parser.parse_args(argv)
    try:
        server = serve(
            args.host,
            args.port,
            profile=args.profile,
            alternate_key=args.alternate_key,
            resource=args.resource,
            tenant_id=args.tenant_id,
            bulk_supported=not args.no_bulk,
            max_page_size=args.max_page_size,
            protection=Limits.from_dict({
                "requests_per_window": args.requests_per_window,
                "execution_ms_per_window": args.execution_ms_per_window,
                "max_concurrent": args.max_concurrent,
                "window_seconds": args.window_seconds,
                "execution_ms_per_record": args.execution_ms_per_record,
            }),
        )
    except ValueError as exc:
        parser.error(str(exc))
    run_until_signalled(server, server.url)


if __name__ == "__main__":
    main()
