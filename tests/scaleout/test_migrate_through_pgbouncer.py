"""`python -m shared.postgres.migrate` through PgBouncer in transaction mode, by several processes at once."""
from __future__ import annotations

import secrets

from local import services
from shared.postgres.queries import MIGRATIONS_DIR
from tests.scaleout.observe import observer_connection, run_migrations


def test_migrations_run_once_through_pgbouncer_when_several_processes_start_together(postgres_server, pgbouncer):
    # given: an empty database, reached through PgBouncer in transaction mode
    name = f"leadpush_migrate_{secrets.token_hex(4)}"
    direct = services.create_database(postgres_server.url, name)
    try:
        # when: four instances migrate at once, then one more later
        together = run_migrations(pgbouncer.database_url(name), processes=4)
        later = run_migrations(pgbouncer.database_url(name), processes=1)

        # then: all succeed, one applied every migration, the others found the schema up to date
        assert [r.returncode for r in together + later] == [0] * 5, [r.stderr for r in together + later]
        outputs = sorted(r.stdout.strip() for r in together)
        expected = sorted(path.stem for path in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))
        assert outputs == [f"migrate: applied {', '.join(expected)}"] + ["migrate: schema up to date"] * 3
        assert later[0].stdout.strip() == "migrate: schema up to date"
        conn = observer_connection(direct)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT version FROM schema_migration ORDER BY version")
                assert [v for (v,) in cur.fetchall()] == expected
                # the transaction-scoped lock went with its transaction, on whichever server connection
                cur.execute("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                            " WHERE l.locktype = 'advisory' AND d.datname = current_database()")
                assert cur.fetchone()[0] == 0
        finally:
            conn.close()
    finally:
        services.drop_database(postgres_server.url, name)
