"""A database of the test's own, migrated through PgBouncer, and reached by the hosts through it."""
from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from local import services
from local.services import PgBouncer, PostgresServer
from tests.scaleout.observe import run_migrations


@dataclass(frozen=True)
class BouncedDatabase:
    name: str
    direct_url: str   # straight to PostgreSQL: for observing
    url: str          # through PgBouncer in transaction mode: the hosts' DATABASE_URL
    bouncer: PgBouncer


@pytest.fixture
def bounced_database(postgres_server: PostgresServer, pgbouncer: PgBouncer) -> Iterator[BouncedDatabase]:
    """A new database, migrated through PgBouncer by three `python -m shared.postgres.migrate` at once."""
    name = f"leadpush_scaleout_{secrets.token_hex(4)}"
    direct = services.create_database(postgres_server.url, name)
    try:
        failed = [r.stderr for r in run_migrations(pgbouncer.database_url(name), processes=3) if r.returncode]
        assert failed == [], "migrations through PgBouncer"
        yield BouncedDatabase(name=name, direct_url=direct, url=pgbouncer.database_url(name), bouncer=pgbouncer)
    finally:
        services.drop_database(postgres_server.url, name)
