"""`python -m local.emulators.dataverse --host 127.0.0.1 --port 0 [--profile mvp|full|bare]
[--alternate-key COLUMN] [--resource URL]` prints `ready http://127.0.0.1:<port>` once listening."""
from __future__ import annotations

import argparse

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
    args = parser.parse_args(argv)
    try:
        server = serve(
            args.host,
            args.port,
            profile=args.profile,
            alternate_key=args.alternate_key,
            resource=args.resource,
            tenant_id=args.tenant_id,
        )
    except ValueError as exc:
        parser.error(str(exc))
    run_until_signalled(server, server.url)


if __name__ == "__main__":
    main()
