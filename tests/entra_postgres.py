"""A PostgreSQL that signs a role in with Entra tokens only, as Azure Database for PostgreSQL does.

The session's PostgreSQL trusts everyone, so this starts a throwaway cluster with TLS on and a
pg_hba.conf that lets ROLE in only over TLS and only with its password (the postgres superuser keeps
trust). `TokenPasswords`, given to the identity emulator as `on_issue`, makes each PostgreSQL token
it issues ROLE's password: the server then accepts the newest token of that identity.
"""
from __future__ import annotations

import shutil
import threading
import time
from typing import Any

import psycopg2
from psycopg2 import sql

from local import services
from local.emulators.authority import write_certificates
from shared.postgres.connect import POSTGRES_SCOPE

ROLE = "leadpush_mi"
POSTGRES_RESOURCE = POSTGRES_SCOPE.removesuffix("/.default")


def start_tls_postgres(role: str = ROLE) -> services.PostgresServer:
    """A throwaway cluster with ssl=on where `role` (created, without a password) needs TLS and a password."""
    server = services.start_throwaway_postgres()
    assert server.cluster is not None
    try:
        certs = write_certificates(server.cluster.root / "tls")
        for path in (certs.cert.parent, certs.cert, certs.key):
            shutil.chown(path, "postgres", "postgres")
        hba = server.cluster.data_dir / "pg_hba.conf"
        hba.write_text(
            f"hostssl all {role} 127.0.0.1/32 scram-sha-256\n"
            f"host all {role} 127.0.0.1/32 reject\n" + hba.read_text()
        )
        admin(server.url, "ALTER SYSTEM SET ssl = on")
        admin(server.url, "ALTER SYSTEM SET ssl_cert_file = %s", str(certs.cert))
        admin(server.url, "ALTER SYSTEM SET ssl_key_file = %s", str(certs.key))
        admin(server.url, "SELECT pg_reload_conf()")
        admin(server.url, sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        for _ in range(50):
            if admin(server.url, "SHOW ssl") == ("on",):
                return server
            time.sleep(0.1)
        raise AssertionError("ssl did not come on after pg_reload_conf()")
    except BaseException:
        server.close()
        raise


def admin(url: str, statement: Any, *params: str) -> tuple | None:
    """Run one statement as the (trusted) superuser, in autocommit; its first row, if any."""
    conn = psycopg2.connect(url, connect_timeout=5)
    try:
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute(statement, params or None)
            return cur.fetchone() if cur.description else None
    finally:
        conn.close()


class TokenPasswords:
    """The identity emulator's `on_issue`: each PostgreSQL token becomes `role`'s password. Records
    `(token, expires_on)` of each, in order."""

    def __init__(self, server_url: str, role: str = ROLE) -> None:
        self._url = server_url
        self._role = role
        self._lock = threading.Lock()
        self.tokens: list[tuple[str, int]] = []

    def __call__(self, resource: str, token: str, expires_on: int) -> None:
        if resource.rstrip("/") != POSTGRES_RESOURCE:
            return
        with self._lock:
            admin(self._url, sql.SQL("ALTER ROLE {} PASSWORD %s").format(sql.Identifier(self._role)), token)
            self.tokens.append((token, expires_on))
