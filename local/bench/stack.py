"""The services the benchmark runs against, started once and stopped in reverse order.

Azurite (in memory, a free port), a throwaway PostgreSQL database `leadpush_bench_<hex>`, the
managed-identity emulator, Dataverse emulators (one per profile and alternate key, started on first
use) and local Functions hosts (one per measurement that needs one).
"""
from __future__ import annotations

import os
import secrets
from contextlib import ExitStack, contextmanager
from typing import Iterator

import psycopg2

from local import services
from shared.postgres.migrate import migrate
from local.services import ManagedProcess
from local.emulators.control_client import EmulatorControl
from shared.runtime.container import Container
from shared.runtime.settings import Settings

WEBHOOK_SECRET = "bench-webhook-secret"
IDENTITY_HEADER = "bench-identity-header"
# Settings a caller's own environment could carry into a host; the host gets only ours.
_APP_SETTING_PREFIXES = ("D365_", "DATAVERSE_", "HUNTER_", "IDENTITY_", "DATABASE_", "LEAD_")
_APP_SETTINGS = ("AzureWebJobsStorage", "DATABASE_URL", "LEAD_QUEUE_NAME", "REQUESTS_CA_BUNDLE", "LOG_LEVEL")


class Stack:
    """What the sections need: connection settings, emulators, hosts and fresh company ids."""

    def __init__(self, exits: ExitStack, *, azurite: ManagedProcess, storage: str, database_url: str,
                 identity_endpoint: str) -> None:
        self.azurite = azurite
        self.storage = storage
        self.database_url = database_url
        self.identity_endpoint = identity_endpoint
        self._exits = exits
        self._emulators: dict[tuple[str, str | None], EmulatorControl] = {}
        self._next_company_id = 1_000_000

    def dataverse(self, profile: str = "mvp", alternate_key: str | None = None) -> EmulatorControl:
        """A reset emulator for this configuration (started on first use). Raises ServiceError."""
        key = (profile, alternate_key)
        if key in self._emulators:
            self._emulators[key].reset()
        else:
            process = services.start_dataverse_emulator(profile=profile, alternate_key=alternate_key)
            self._exits.callback(process.stop)
            emulator = self._emulators[key] = EmulatorControl(process.url, process)
            self._exits.callback(emulator.http.close)
        return self._emulators[key]

    def app_env(self, dataverse: EmulatorControl, **overrides: str) -> dict[str, str]:
        """Every app setting, with a fresh queue, reaching `dataverse` through the identity emulator."""
        return {
            "AzureWebJobsStorage": self.storage,
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "DATABASE_URL": self.database_url,
            "LEAD_QUEUE_NAME": f"bench-{secrets.token_hex(4)}",
            "CRM_OUTCOME_SCHEDULE": "0 */5 * * * *",
            "HUNTER_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "D365_URL": dataverse.url,
            "D365_AUTH_MODE": "managed_identity",
            "IDENTITY_ENDPOINT": self.identity_endpoint,
            "IDENTITY_HEADER": IDENTITY_HEADER,
            **overrides,
        }

    def company_ids(self, count: int) -> range:
        """Company ids no earlier measurement used, so every lead starts new."""
        ids = range(self._next_company_id, self._next_company_id + count)
        self._next_company_id += count + 1000
        return ids

    @contextmanager
    def host(self, env: dict[str, str]) -> Iterator[ManagedProcess]:
        """The local Functions host with `env` as its app settings. Raises ServiceError."""
        base = {name: value for name, value in os.environ.items()
                if name not in _APP_SETTINGS and not name.startswith(_APP_SETTING_PREFIXES)}
        process = services.start_funchost(services.free_port(), env={**base, **env})
        try:
            yield process
        finally:
            process.stop()

    @contextmanager
    def container(self, env: dict[str, str]) -> Iterator[Container]:
        """The app's dependency container, in this process, closed on the way out."""
        container = Container(Settings.from_env(env))
        try:
            yield container
        finally:
            if "store" in container._built:
                container.store.close()
            if "dataverse" in container._built:
                container.dataverse.close()

    def synced_count(self, ids: range) -> int:
        """How many of the companies `ids` are `synced` in PostgreSQL."""
        with psycopg2.connect(self.database_url) as conn, conn.cursor() as cur:
            try:
                cur.execute(
                    "SELECT count(*) FROM lead_sync WHERE status = 'synced' AND company_id BETWEEN %(lo)s AND %(hi)s",
                    {"lo": ids.start, "hi": ids.stop - 1},
                )
            except psycopg2.errors.UndefinedTable:  # the app has not migrated the database yet
                return 0
            return cur.fetchone()[0]


@contextmanager
def running_stack() -> Iterator[Stack]:
    """Start the shared services; everything started is stopped (and the database dropped) on the
    way out, also after an exception or Ctrl-C. Raises ServiceError if a service does not start."""
    with ExitStack() as exits:
        azurite, storage = services.start_azurite()
        exits.callback(azurite.stop)

        server = services.resolve_postgres()
        exits.callback(server.close)
        name = f"leadpush_bench_{secrets.token_hex(4)}"
        database_url = services.create_database(server.url, name)
        exits.callback(services.drop_database, server.url, name)
        migrate(database_url)

        identity = services.start_identity_emulator(identity_header=IDENTITY_HEADER)
        exits.callback(identity.stop)
        # azure-identity reads its endpoint from this process's environment, for in-process containers.
        exits.enter_context(_environ(IDENTITY_ENDPOINT=identity.url, IDENTITY_HEADER=IDENTITY_HEADER))
        yield Stack(exits, azurite=azurite, storage=storage, database_url=database_url, identity_endpoint=identity.url)


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
