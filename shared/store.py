"""PostgreSQL: the sync state of every lead and the audit of every attempt.

All SQL lives in `queries.sql` (by name) and `migrations/` (numbered, forward only). Driver errors
that mean the database is unreachable become `StoreUnavailable`, a transient error.
"""
from __future__ import annotations

import json
import logging
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator, Sequence

import psycopg2
import psycopg2.errors
import psycopg2.extras

from shared.errors import StoreUnavailable, TransientError
from shared.messages import LeadMessage

logger = logging.getLogger(__name__)

_HERE = Path(__file__).resolve().parent
MIGRATIONS_DIR = _HERE / "migrations"
_MIGRATION_LOCK = -727_001  # advisory lock key; lead locks use positive company ids


def _load_queries(path: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for block in re.split(r"^-- name: ", path.read_text(), flags=re.M)[1:]:
        name, _, body = block.partition("\n")
        queries[name.strip()] = body.strip().rstrip(";")
    return queries


Q = _load_queries(_HERE / "queries.sql")


def _with_attempt(update: str) -> str:
    """A state change and its audit row as one statement (a data-modifying CTE always runs):
    atomic in autocommit, one round trip instead of four (BEGIN, UPDATE, INSERT, COMMIT)."""
    return f"WITH changed AS ({Q[update]}) {Q['insert_attempt']}"


_MARK = {name: _with_attempt(name) for name in ("mark_synced", "mark_skipped", "mark_deferred", "mark_failure")}


@dataclass(frozen=True)
class SyncState:
    """What the store knows of a lead when a worker claims it."""

    d365_lead_id: str | None
    synced_version: datetime | None
    synced_fingerprint: str | None
    attempts: int


@dataclass(frozen=True)
class Attempt:
    """One row of the audit table."""

    outcome: str
    duration_ms: float
    failure_class: str | None = None
    http_status: int | None = None
    error_code: str | None = None
    error: str | None = None
    d365_lead_id: str | None = None
    dataverse_requests: int = 0
    correlation_id: str | None = None
    dequeue_count: int | None = None


class _ConnectionPool:
    """Up to `size` connections, idle ones kept for reuse (psycopg2's own pool closes every
    connection handed back beyond `minconn`, which made each lead pay for a new backend)."""

    def __init__(self, url: str, size: int) -> None:
        self._url = url
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[Any] = []
        self._lock = threading.Lock()

    @contextmanager
    def connection(self) -> Iterator[Any]:
        with self._slots:
            with self._lock:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                # lock_timeout: a worker waiting this long for a lead another worker holds gives
                # up, and the message is retried later.
                conn = psycopg2.connect(self._url, connect_timeout=5, application_name="lead-push",
                                        options="-c lock_timeout=30s")
            keep = False
            try:
                yield conn
                keep = not conn.closed
            finally:
                if keep:
                    with self._lock:
                        self._idle.append(conn)
                else:
                    conn.close()

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


class LeadStore:
    """Sync state in PostgreSQL, shared by the worker threads of one process."""

    def __init__(self, database_url: str, *, max_connections: int = 32) -> None:
        self._pool = _ConnectionPool(database_url, max_connections)

    # --- connections ------------------------------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[Any]:
        """A pooled connection; a broken one is discarded and reported as StoreUnavailable."""
        try:
            with self._pool.connection() as conn:
                try:
                    yield conn
                except (psycopg2.OperationalError, psycopg2.InterfaceError):
                    conn.close()
                    raise
                finally:
                    if not conn.closed and conn.status != psycopg2.extensions.STATUS_READY:
                        conn.rollback()
        except psycopg2.errors.LockNotAvailable as exc:
            raise TransientError("another worker holds this lead; retry later") from exc
        except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
            raise StoreUnavailable(f"PostgreSQL unavailable: {_first_line(exc)}") from exc

    def close(self) -> None:
        self._pool.close()

    def _execute(self, name: str, params: dict[str, Any] | None = None, *, fetch: str | None = None) -> Any:
        return self._execute_sql(Q[name], params, fetch=fetch)

    def _execute_sql(self, statement: str, params: dict[str, Any] | None = None, *, fetch: str | None = None) -> Any:
        with self._connection() as conn, conn, conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(statement, params or {})
            if fetch == "one":
                return cur.fetchone()
            if fetch == "all":
                return cur.fetchall()
            return None

    # --- schema -----------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the numbered migrations not yet applied; safe when several workers start at once."""
        applied: list[str] = []
        with self._connection() as conn:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(Q["lock_migrations"], {"key": _MIGRATION_LOCK})
                try:
                    cur.execute(Q["create_migration_table"])
                    cur.execute(Q["applied_migrations"])
                    done = {row[0] for row in cur.fetchall()}
                    for path in sorted(MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql")):
                        if path.stem in done:
                            continue
                        conn.autocommit = False
                        with conn:
                            cur.execute(path.read_text())
                            cur.execute(Q["record_migration"], {"version": path.stem})
                        conn.autocommit = True
                        applied.append(path.stem)
                        logger.info("db_migration_applied %s", path.stem, extra={"migration": path.stem})
                finally:
                    conn.autocommit = True
                    cur.execute(Q["unlock_migrations"], {"key": _MIGRATION_LOCK})
        return applied

    def ping(self) -> None:
        """Raises StoreUnavailable when PostgreSQL does not answer."""
        self._execute("ping", fetch="one")

    # --- intake -----------------------------------------------------------------------------

    def record_queued(self, messages: Sequence[LeadMessage]) -> None:
        rows = [
            {
                "company_id": m.company_id,
                "message": m.to_json(),
                "version": m.version,
                "correlation_id": m.correlation_id,
            }
            for m in messages
        ]
        with self._connection() as conn, conn, conn.cursor() as cur:
            psycopg2.extras.execute_batch(cur, Q["record_queued"], rows, page_size=100)

    def delivery_response(self, delivery_id: str) -> dict | None:
        row = self._execute("delivery_response", {"delivery_id": delivery_id}, fetch="one")
        return row["response"] if row else None

    def remember_delivery(self, delivery_id: str, response: dict) -> None:
        self._execute("remember_delivery", {"delivery_id": delivery_id, "response": json.dumps(response)})

    # --- push -------------------------------------------------------------------------------

    @contextmanager
    def lead_session(self, company_id: int) -> Iterator["LeadSession"]:
        """Holds the lead's lock for the whole attempt, so one worker at a time writes a lead.

        A session-level advisory lock on a dedicated connection: other leads are not blocked,
        and a connection that dies releases the lock with it.
        """
        with self._connection() as conn:
            conn.autocommit = True  # every verb is one statement; no BEGIN/COMMIT round trips
            try:
                yield LeadSession(conn, company_id)
            finally:
                if not conn.closed:
                    with conn.cursor() as cur:
                        cur.execute(Q["unlock_all"])
                    conn.autocommit = False

    def record_rejected_message(self, company_id: int, reason: str, *, dequeue_count: int | None) -> None:
        """A message for this lead that can never be processed: audited, and the lead marked failed."""
        attempt = Attempt(outcome="failed", failure_class="permanent", error=reason, duration_ms=0.0,
                          dequeue_count=dequeue_count)
        self._execute_sql(_MARK["mark_failure"], {"company_id": company_id, "status": "failed", "error": reason,
                                                  **_attempt_params(attempt)})

    # --- reading ----------------------------------------------------------------------------

    def lead_state(self, company_id: int) -> dict | None:
        return self._execute("lead_state", {"company_id": company_id}, fetch="one")

    # --- replay and sweep -------------------------------------------------------------------

    def reset_for_replay(self, company_id: int) -> None:
        self._execute("reset_for_replay", {"company_id": company_id})

    def claim_stuck(self, *, age_seconds: int, limit: int = 500) -> list[tuple[int, dict]]:
        rows = self._execute("claim_stuck", {"age_seconds": age_seconds, "limit": limit}, fetch="all")
        return [(row["company_id"], row["message"]) for row in rows]

    def count_by_status(self) -> dict[str, int]:
        """Status -> number of leads in it (statuses with none are absent). Raises StoreUnavailable."""
        return {row["status"]: row["leads"] for row in self._execute("count_by_status", fetch="all")}


class LeadSession:
    """The verbs of one attempt at one lead, under the lead's lock; each verb is one statement."""

    def __init__(self, conn: Any, company_id: int) -> None:
        self._conn = conn
        self.company_id = company_id

    def _mark(self, name: str, attempt: Attempt, **params: Any) -> None:
        with self._conn.cursor() as cur:
            cur.execute(_MARK[name], {"company_id": self.company_id, **params, **_attempt_params(attempt)})

    def claim(self, message: LeadMessage) -> SyncState:
        """Takes the lead's lock (waiting for another worker to finish it), marks it processing."""
        with self._conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute(Q["lock_lead"], {"company_id": self.company_id})
            cur.execute(Q["claim"], {"company_id": self.company_id, "message": message.to_json(),
                                     "version": message.version, "correlation_id": message.correlation_id})
            row = cur.fetchone()
        return SyncState(
            d365_lead_id=str(row["d365_lead_id"]) if row["d365_lead_id"] else None,
            synced_version=row["synced_version"],
            synced_fingerprint=row["synced_fingerprint"],
            attempts=row["attempts"],
        )

    def mark_synced(self, attempt: Attempt, *, version: datetime, fingerprint: str, warnings: Sequence[str]) -> None:
        self._mark("mark_synced", attempt, version=version, fingerprint=fingerprint,
                   warnings=json.dumps(list(warnings)))

    def mark_skipped(self, attempt: Attempt) -> None:
        self._mark("mark_skipped", attempt)

    def mark_deferred(self, attempt: Attempt) -> None:
        self._mark("mark_deferred", attempt)

    def mark_failure(self, attempt: Attempt, *, final: bool) -> None:
        self._mark("mark_failure", attempt, status="failed" if final else "error")


def _attempt_params(attempt: Attempt) -> dict[str, Any]:
    return {
        "outcome": attempt.outcome,
        "failure_class": attempt.failure_class,
        "http_status": attempt.http_status,
        "error_code": attempt.error_code,
        "error": attempt.error,
        "duration_ms": round(attempt.duration_ms, 3),
        "d365_lead_id": attempt.d365_lead_id,
        "dataverse_requests": attempt.dataverse_requests,
        "correlation_id": attempt.correlation_id,
        "dequeue_count": attempt.dequeue_count,
    }


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
