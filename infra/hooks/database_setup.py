"""The hook's SQL, run as the deploying Microsoft Entra administrator with their Entra token as password.

1. In the `postgres` database (Azure's pgaadauth functions live only there; roles are server-wide): create the
   app's role, bound to its managed identity's object id, unless it exists; then check that it holds no
   administrator right (an earlier release made the identity an Entra administrator).
2. In the app's database: the migrations (`python -m shared.postgres.migrate`), owned by the deployer.
3. grant_app_role.sql: the app's role gets the rows of its tables and the use of their sequences, nothing else.

Errors: `SetupError`, whose message says which step failed and why (never the token).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import psycopg2
from psycopg2 import sql

ROOT = Path(__file__).resolve().parents[2]
GRANTS = Path(__file__).with_name("grant_app_role.sql")
MAINTENANCE_DATABASE = "postgres"
MIGRATE_MODULE = "shared.postgres.migrate"
# pgaadauth's object types: 'service' is a service principal or managed identity.
SERVICE_PRINCIPAL = "service"
ADMIN_RIGHTS = """
SELECT rolsuper OR rolcreaterole OR rolcreatedb OR rolbypassrls
       OR EXISTS (SELECT 1 FROM pg_roles admin WHERE admin.rolname = 'azure_pg_admin'
                  AND pg_has_role(role.oid, admin.oid, 'MEMBER'))
FROM pg_roles role WHERE role.rolname = %(role)s
"""


class SetupError(Exception):
    """A database step failed."""


@dataclass(frozen=True)
class Server:
    """Where and as whom the hook signs in: port 5432 (not PgBouncer), TLS, the deployer's token."""

    host: str
    user: str
    token: str
    port: int = 5432
    sslmode: str = "require"

    def url(self, database: str) -> str:
        return f"postgresql://{quote(self.user, safe='')}@{self.host}:{self.port}/{database}?sslmode={self.sslmode}"

    def connect(self, database: str):
        """An autocommit connection. Raises psycopg2.Error."""
        connection = psycopg2.connect(self.url(database), password=self.token, connect_timeout=10)
        connection.autocommit = True
        return connection


def ensure_app_role(server: Server, role: str, object_id: str) -> bool:
    """Create `role` for the managed identity `object_id` unless it exists. True when created now.
    Raises SetupError when the role has administrator rights."""
    connection = server.connect(MAINTENANCE_DATABASE)
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %(role)s", {"role": role})
            created = cursor.fetchone() is None
            if created:
                cursor.execute(
                    "SELECT pgaadauth_create_principal_with_oid(%(role)s, %(oid)s, %(type)s, false, false)",
                    {"role": role, "oid": object_id, "type": SERVICE_PRINCIPAL},
                )
            cursor.execute(ADMIN_RIGHTS, {"role": role})
            (too_much,) = cursor.fetchone()
    finally:
        connection.close()
    if too_much:
        raise SetupError(
            f"the app's role {role} can create roles or databases, or is a member of azure_pg_admin: it was an "
            "Entra administrator in an earlier release. Drop it (DROP OWNED BY / DROP ROLE, as an administrator, "
            "in each database) and run `azd hooks run postprovision` again: the hook creates it anew"
        )
    return created


def migrate(server: Server, database: str) -> str:
    """Apply the migrations as the deployer; returns what `migrate` printed."""
    env = {**os.environ, "DATABASE_URL": server.url(database), "DATABASE_AUTH": "password", "PGPASSWORD": server.token}
    done = subprocess.run(
        [sys.executable, "-m", MIGRATE_MODULE], cwd=ROOT, env=env, text=True, capture_output=True, check=False
    )
    if done.returncode != 0:
        raise SetupError(f"python -m {MIGRATE_MODULE} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def grant_statements(app_role: str) -> sql.Composed:
    """grant_app_role.sql with the app's role quoted as an identifier."""
    return sql.SQL(GRANTS.read_text()).format(app_role=sql.Identifier(app_role))


def grant(server: Server, database: str, app_role: str) -> None:
    connection = server.connect(database)
    try:
        with connection.cursor() as cursor:
            cursor.execute(grant_statements(app_role))
    finally:
        connection.close()
