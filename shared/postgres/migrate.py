"""`python -m shared.postgres.migrate`: bring the database's schema up to date.

An explicit step (run by `make run`, the tests and deployment), never a side effect of the first
request a worker serves: many instances starting at once would otherwise all try it. It needs only
`DATABASE_URL` (and `DATABASE_AUTH=managed_identity` where the app's identity signs in); libpq's
own `PGPASSWORD` works too, e.g. with a signed-in administrator's Entra token.
"""

from __future__ import annotations

import os
import sys

from azure.identity import ManagedIdentityCredential

from shared.model.errors import StoreUnavailable
from shared.postgres.connect import EntraPassword, PostgresConnector
from shared.postgres.store import LeadStore


def migrate(url: str, *, password: EntraPassword | None = None) -> list[str]:
    """Apply the migrations not yet applied; returns their names. Raises StoreUnavailable."""
    store = LeadStore(connect=PostgresConnector(url, password=password).connect, pool_max=1)
    try:
        return store.migrate()
    finally:
        store.close()


def main() -> int:
    url = os.environ.get("DATABASE_URL")
    if not url:
        print(
            "migrate: DATABASE_URL is missing: PostgreSQL URL, e.g. postgresql://user@host:5432/leadpush",
            file=sys.stderr,
        )
        return 2
    password = None
    if os.environ.get("DATABASE_AUTH", "password") == "managed_identity":
        client_id = os.environ.get("D365_MANAGED_IDENTITY_CLIENT_ID") or None
        password = EntraPassword(ManagedIdentityCredential(client_id=client_id))
    try:
        applied = migrate(url, password=password)
    except StoreUnavailable as exc:
        print(f"migrate: {exc}", file=sys.stderr)
        return 1
    print(f"migrate: applied {', '.join(applied)}" if applied else "migrate: schema up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
