"""Watching a scaled-out run from the side: PostgreSQL's server connections, each host's
connections to PgBouncer, cuts of the server connections, and the outcome in PostgreSQL and Dataverse.

Every connection made here goes straight to PostgreSQL under the application name `OBSERVER`, so
the counts and the cuts see only the connections PgBouncer opened for the hosts.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extras
from psycopg2.extensions import connection as Connection

from local.services import REPO

OBSERVER = "scaleout-observer"
_SERVER_BACKENDS = """
    SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND backend_type = 'client backend'
      AND pid <> pg_backend_pid() AND application_name IS DISTINCT FROM %(observer)s
"""


def observer_connection(database_url: str) -> Connection:
    conn = psycopg2.connect(database_url, application_name=OBSERVER, connect_timeout=5)
    conn.autocommit = True
    return conn


def server_connections(conn: Connection) -> int:
    """PostgreSQL backends of this database that are not ours: PgBouncer's server connections."""
    with conn.cursor() as cur:
        cur.execute(_SERVER_BACKENDS, {"observer": OBSERVER})
        return len(cur.fetchall())


def cut_server_connections(conn: Connection) -> int:
    """Terminate every server connection to this database (PgBouncer's); returns how many."""
    with conn.cursor() as cur:
        cur.execute(f"SELECT pg_terminate_backend(pid) FROM ({_SERVER_BACKENDS}) AS s", {"observer": OBSERVER})
        return sum(1 for (done,) in cur.fetchall() if done)


def connections_to_port(pid: int, port: int) -> int:
    """TCP connections process `pid` holds open to 127.0.0.1:`port` (0 once it has exited)."""
    try:
        inodes = {
            target[len("socket:["):-1]
            for fd in os.listdir(f"/proc/{pid}/fd")
            if (target := _readlink(f"/proc/{pid}/fd/{fd}")).startswith("socket:[")
        }
        lines = Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return 0
    count = 0
    for line in lines:
        fields = line.split()
        if int(fields[2].rsplit(":", 1)[1], 16) == port and fields[9] in inodes:
            count += 1
    return count


def _readlink(path: str) -> str:
    try:
        return os.readlink(path)
    except OSError:
        return ""


class Repeating:
    """Calls `action` every `interval` seconds on a thread of its own until `stop()`; an exception
    from `action` is kept (`errors`) and the next call made anyway."""

    def __init__(self, name: str, interval: float, action: Callable[[], None]) -> None:
        self.errors: list[BaseException] = []
        self._interval = interval
        self._action = action
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Repeating:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            try:
                self._action()
            except Exception as exc:  # noqa: BLE001 - kept for the test to report
                self.errors.append(exc)


class ConnectionWatch:
    """Samples, every `interval` seconds, PostgreSQL's server connections to the database and each
    host process's connections to PgBouncer; keeps the peaks."""

    def __init__(self, database_url: str, *, bouncer_port: int, host_pids: Callable[[], Iterable[int]],
                 interval: float = 0.1) -> None:
        self.peak_server = 0
        self.peak_per_host = 0
        self.samples = 0
        self._conn = observer_connection(database_url)
        self._port = bouncer_port
        self._host_pids = host_pids
        self._loop = Repeating("connection-watch", interval, self._sample)

    def __enter__(self) -> ConnectionWatch:
        self._loop.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.stop()
        self._conn.close()

    @property
    def errors(self) -> list[BaseException]:
        return self._loop.errors

    def _sample(self) -> None:
        per_host = [connections_to_port(pid, self._port) for pid in self._host_pids()]
        self.peak_per_host = max([self.peak_per_host, *per_host])
        self.peak_server = max(self.peak_server, server_connections(self._conn))
        self.samples += 1


class ConnectionCutter:
    """Terminates PgBouncer's server connections to the database every `every` seconds."""

    def __init__(self, database_url: str, *, every: float) -> None:
        self.cut = 0
        self._conn = observer_connection(database_url)
        self._loop = Repeating("connection-cutter", every, self._cut)

    def __enter__(self) -> ConnectionCutter:
        self._loop.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.stop()
        self._conn.close()

    def _cut(self) -> None:
        self.cut += cut_server_connections(self._conn)


def sync_rows(database_url: str, company_ids: list[int]) -> dict[int, dict[str, Any]]:
    conn = observer_connection(database_url)
    try:
        with conn.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
            cur.execute("SELECT * FROM lead_sync WHERE company_id = ANY(%s)", (company_ids,))
            return {row["company_id"]: row for row in cur.fetchall()}
    finally:
        conn.close()


def all_synced(database_url: str, company_ids: list[int]) -> dict[int, dict[str, Any]] | None:
    rows = sync_rows(database_url, company_ids)
    done = len(rows) == len(company_ids) and all(r["status"] == "synced" for r in rows.values())
    return rows if done else None


def newest_versions_hold(records: list[dict[str, Any]], expected: dict[int, int]) -> None:
    """Exactly one Dataverse lead per company, each holding its newest version's score."""
    by_company: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_company.setdefault(record["hnt_companyid"], []).append(record)
    missing = sorted(set(expected) - set(by_company))
    assert missing == [], "every lead in Dataverse"
    duplicates = {c: len(r) for c, r in by_company.items() if len(r) != 1}
    assert duplicates == {}, "one record per company"
    stale = {c: r[0]["hnt_finalscore"] for c, r in by_company.items() if r[0]["hnt_finalscore"] != expected.get(c)}
    assert stale == {}, "each record holds its newest version"


def run_migrations(database_url: str, *, processes: int) -> list[subprocess.CompletedProcess[str]]:
    """`python -m shared.postgres.migrate` in `processes` processes started together, as instances starting at once."""
    env = {**os.environ, "DATABASE_URL": database_url, "DATABASE_AUTH": "password"}
    started = [
        subprocess.Popen([sys.executable, "-m", "shared.postgres.migrate"], cwd=REPO, env=env, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(processes)
    ]
    results = []
    for popen in started:
        out, err = popen.communicate(timeout=120)
        results.append(subprocess.CompletedProcess(popen.args, popen.returncode, out, err))
    return results
