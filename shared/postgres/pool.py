"""Connections to PostgreSQL, each lent for one statement in autocommit, and the statement runner
that survives a pooled connection closed while idle."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras

from shared.model.errors import StoreRefused, StoreUnavailable

logger = logging.getLogger(__name__)

DROPPED = (psycopg2.OperationalError, psycopg2.InterfaceError)
# No statement or lock wait outlives a push's budget. Set with each statement, in its own implicit
# transaction: through PgBouncer in transaction mode a connection's settings would reach whichever
# server connection happens to serve it, and a startup `options` is refused by PgBouncer.
STATEMENT_TIMEOUT_MS = 15_000
LOCK_TIMEOUT_MS = 5_000
_BOUNDED = f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}; SET lock_timeout = {LOCK_TIMEOUT_MS}; "


class ConnectionPool:
    """At most `size` connections, each lent for one statement; idle ones are kept for reuse."""

    def __init__(self, connect: Callable[[], Any], size: int) -> None:
        self._connect = connect
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Any] = []
        self._lock = threading.Lock()
        self.opened = 0  # connections made so far, for tests and the benchmark

    @contextmanager
    def connection(self) -> Iterator[tuple[Any, bool]]:
        """(connection, reused); a connection that broke is closed, not returned to the pool."""
        with self._slots:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            reused = conn is not None
            if conn is None:
                conn = self._connect()
                conn.autocommit = True
                with self._lock:
                    self.opened += 1
            try:
                yield conn, reused
            except DROPPED:
                conn.close()
                raise
            finally:
                if not conn.closed:
                    if conn.status != psycopg2.extensions.STATUS_READY:
                        conn.rollback()
                    with self._lock:
                        self._idle.append(conn)

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class Database:
    """Runs one statement at a time on the pool; driver errors that mean the database is
    unreachable become `StoreUnavailable`."""

    def __init__(self, connect: Callable[[], Any], pool_max: int) -> None:
        self.pool = ConnectionPool(connect, pool_max)

    @property
    def connections_opened(self) -> int:
        return self.pool.opened

    def close(self) -> None:
        self.pool.close()

    def run(
        self,
        statement: str,
        params: dict[str, Any] | None = None,
        *,
        fetch: str | None = None,
        rows: Sequence[dict[str, Any]] | None = None,
    ) -> Any:
        """One statement, autocommit. A pooled connection that PostgreSQL or PgBouncer closed while
        idle fails on first use: the statement is then sent once more on a new connection (every
        statement the store runs is idempotent or guarded, so a second run is harmless)."""
        for last_try in (False, True):
            reused = False
            try:
                with self.pool.connection() as (conn, reused), conn.cursor() as cur:
                    return _execute(cur, statement, params, fetch, rows)
            except DROPPED as exc:
                if last_try or not reused:
                    raise unavailable(exc) from exc
                logger.info("db_reconnect: %s", first_line(exc))
            except (psycopg2.IntegrityError, psycopg2.DataError) as exc:
                raise StoreRefused(first_line(exc), constraint=exc.diag.constraint_name) from exc
        raise AssertionError("unreachable")


def _execute(cur: Any, statement: str, params: dict[str, Any] | None, fetch: str | None, rows: Any) -> Any:
    if rows is not None:
        cur.execute(_BOUNDED.rstrip("; "))
        psycopg2.extras.execute_batch(cur, statement, rows, page_size=100)
        return None
    cur.execute(_BOUNDED + statement, params or {})
    if fetch == "one":
        return cur.fetchone()
    if fetch == "all":
        return cur.fetchall()
    return None


def unavailable(exc: BaseException) -> StoreUnavailable:
    return StoreUnavailable(f"PostgreSQL unavailable: {first_line(exc)}")


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
