"""Applies the numbered migrations in `migrations/` that a database has not seen, forward only."""

from __future__ import annotations

import logging

from shared.postgres.pool import DROPPED, Database, unavailable
from shared.postgres.queries import MIGRATIONS_DIR, Q

logger = logging.getLogger(__name__)

_MIGRATION_LOCK = -727_001  # advisory lock key of the migrations


def apply_migrations(db: Database) -> list[str]:
    """Apply the migrations not yet applied, in one transaction under a transaction-scoped lock:
    safe when several processes run it at once, through PgBouncer too. Returns their names.
    Raises StoreUnavailable."""
    try:
        with db.pool.connection() as (conn, _):
            conn.autocommit = False
            try:
                with conn, conn.cursor() as cur:
                    cur.execute(Q["lock_migrations"], {"key": _MIGRATION_LOCK})
                    cur.execute(Q["create_migration_table"])
                    cur.execute(Q["applied_migrations"])
                    done = {row["version"] for row in cur.fetchall()}
                    applied = []
                    for path in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql")):
                        if path.stem not in done:
                            cur.execute(path.read_text())
                            cur.execute(Q["record_migration"], {"version": path.stem})
                            applied.append(path.stem)
            finally:
                if not conn.closed:
                    conn.autocommit = True
    except DROPPED as exc:
        raise unavailable(exc) from exc
    for version in applied:
        logger.info("db_migration_applied %s", version, extra={"migration": version})
    return applied
