"""Shared fixtures: real Azurite, PostgreSQL, emulators and the local Functions host.

Processes and databases are started once per session (emulators once per configuration) and
cleaned up at the end; per-test state is isolated by unique queue names and `Emulator.reset()`.
"""
from __future__ import annotations

import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import psycopg2
import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from local import services
from shared.postgres.migrate import migrate
from local.emulators.control_client import EmulatorControl as Emulator
from local.services import ManagedProcess, PostgresServer

WEBHOOK_SECRET = "test-webhook-secret"
IDENTITY_HEADER = "test-identity-header"
APP_SETTINGS = (
    "AzureWebJobsStorage", "FUNCTIONS_WORKER_RUNTIME", "DATABASE_URL", "LEAD_QUEUE_NAME",
    "D365_URL", "D365_API_VERSION", "D365_AUTH_MODE", "D365_MANAGED_IDENTITY_CLIENT_ID",
    "D365_TENANT_ID", "D365_CLIENT_ID", "D365_CLIENT_SECRET", "D365_AUTHORITY_HOST",
    "D365_TIMEOUT_SECONDS", "D365_ALTERNATE_KEY", "D365_MATCH_COLUMNS", "D365_METADATA_TTL_SECONDS",
    "D365_CHOICE_OVERRIDES_FILE", "D365_INLINE_RETRY_AFTER_SECONDS", "HUNTER_WEBHOOK_SECRET",
    "HUNTER_ALLOW_UNSIGNED", "HUNTER_SIGNATURE_TOLERANCE_SECONDS", "STUCK_LEAD_AFTER_SECONDS",
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "REQUESTS_CA_BUNDLE",
    "AzureWebJobsStorage__accountName", "AzureWebJobsStorage__queueServiceUri", "AzureWebJobsStorage__credential",
    "AzureWebJobsStorage__clientId", "DATABASE_AUTH", "DATABASE_POOL_MAX", "LEAD_LEASE_SECONDS",
    "D365_METADATA_FAILURE_TTL_SECONDS", "D365_BULK_SIZE", "DATAVERSE_SHARED_BACKOFF", "D365_PAUSE_PROBE_SECONDS",
    "CRM_OUTCOME_SCHEDULE", "D365_HUNTER_OWNED_COLUMNS", "D365_CLOSED_LEADS", "D365_DELETED_LEADS",
)
_HOSTS = pytest.StashKey[list["Host"]]()


# --- Azurite -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Azurite:
    connection_string: str
    port: int
    process: ManagedProcess

    def queue_client(self, name: str) -> QueueClient:
        """A client for queue `name` that speaks base64, as the Functions queue trigger does."""
        return QueueClient.from_connection_string(
            self.connection_string,
            name,
            message_encode_policy=TextBase64EncodePolicy(),
            message_decode_policy=TextBase64DecodePolicy(),
        )


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    process, connection_string = services.start_azurite()
    yield Azurite(connection_string=connection_string, port=process.port, process=process)
    process.stop()


# --- PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    server = services.resolve_postgres()
    yield server
    server.close()


@pytest.fixture
def fresh_database(postgres_server: PostgresServer) -> Iterator[str]:
    """A migrated database of this test's own, for tests whose pushes claim any lead in the database."""
    name = f"leadpush_own_{secrets.token_hex(4)}"
    url = services.create_database(postgres_server.url, name)
    migrate(url)
    yield url
    services.drop_database(postgres_server.url, name)


@pytest.fixture(scope="session")
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh database for this session, migrated as deployment does (`shared.postgres.migrate`)."""
    name = f"leadpush_test_{secrets.token_hex(4)}"
    url = services.create_database(postgres_server.url, name)
    migrate(url)
    yield url
    services.drop_database(postgres_server.url, name)


@pytest.fixture(scope="session")
def pgbouncer(postgres_server: PostgresServer) -> Iterator[services.PgBouncer]:
    """PgBouncer in transaction mode in front of the session's PostgreSQL, as Azure's built-in one
    pools; `pgbouncer.database_url(name)` reaches a database through it."""
    bouncer = services.start_pgbouncer(postgres_server.url, pool_mode="transaction")
    yield bouncer
    bouncer.stop()


# --- Dataverse emulator --------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _dataverse_pool() -> Iterator[dict[tuple[str, str | None], Emulator]]:
    pool: dict[tuple[str, str | None], Emulator] = {}
    yield pool
    for emulator in pool.values():
        emulator.close()


@pytest.fixture
def dataverse(_dataverse_pool: dict[tuple[str, str | None], Emulator]) -> Callable[..., Emulator]:
    """`dataverse(profile="mvp", alternate_key=None)`: a reset emulator, one process per
    configuration for the whole session."""

    def get(profile: str = "mvp", alternate_key: str | None = None) -> Emulator:
        key = (profile, alternate_key)
        emulator = _dataverse_pool.get(key)
        if emulator is None or not emulator.process.running():
            process = services.start_dataverse_emulator(profile=profile, alternate_key=alternate_key)
            emulator = _dataverse_pool[key] = Emulator(url=process.url, process=process)
        else:
            emulator.reset()
        return emulator

    return get


# --- identity and authority emulators ------------------------------------------------------------


@dataclass(frozen=True)
class Identity:
    endpoint: str
    header: str
    process: ManagedProcess


@pytest.fixture(scope="session")
def identity() -> Iterator[Identity]:
    process = services.start_identity_emulator(identity_header=IDENTITY_HEADER)
    yield Identity(endpoint=process.url, header=IDENTITY_HEADER, process=process)
    process.stop()


@dataclass(frozen=True)
class Authority:
    host: str
    tenant_id: str
    client_id: str
    client_secret: str
    ca_bundle: Path
    process: ManagedProcess


@pytest.fixture(scope="session")
def authority(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Authority]:
    cert_dir = tmp_path_factory.mktemp("authority")
    tenant_id, client_id, client_secret = str(uuid.uuid4()), str(uuid.uuid4()), secrets.token_urlsafe(16)
    process = services.start_authority_emulator(
        cert_dir, tenant_id=tenant_id, client_id=client_id, client_secret=client_secret
    )
    yield Authority(
        host=process.url,
        tenant_id=tenant_id,
        client_id=client_id,
        client_secret=client_secret,
        ca_bundle=cert_dir / "ca-bundle.pem",
        process=process,
    )
    process.stop()


# --- the app's environment and the local Functions host ------------------------------------------


@pytest.fixture
def app_env(request: pytest.FixtureRequest, azurite: Azurite, database_url: str) -> Callable[..., dict[str, str]]:
    """`app_env(dataverse=None, *, queue_name=None, **overrides) -> dict`: every app setting.

    Defaults: a fresh `leads-<8 hex>` queue, the session database, the given (else an "mvp")
    Dataverse emulator reached through the managed-identity emulator (or, with
    D365_AUTH_MODE="client_secret", the authority emulator), HUNTER_WEBHOOK_SECRET set. An override of None removes the setting. Emulators are started only when needed.
    """

    # The session database is shared; Dataverse throttling recorded by an earlier test is not this one's.
    with psycopg2.connect(database_url) as conn, conn.cursor() as cur:
        cur.execute("DELETE FROM dataverse_throttle")
        cur.execute("DELETE FROM pipeline_pause")  # nor its pause
    conn.close()

    def build(dataverse: Emulator | None = None, *, queue_name: str | None = None, **overrides: str | None) -> dict[str, str]:
        env: dict[str, str] = {
            "AzureWebJobsStorage": azurite.connection_string,
            "FUNCTIONS_WORKER_RUNTIME": "python",
            "DATABASE_URL": database_url,
            "LEAD_QUEUE_NAME": queue_name or f"leads-{secrets.token_hex(4)}",
            # once a year: a test that reads outcomes runs the reader itself or sets its own schedule
            "CRM_OUTCOME_SCHEDULE": "0 0 0 1 1 *",
            "HUNTER_WEBHOOK_SECRET": WEBHOOK_SECRET,
            # A bulk push claims any due lead in the database, and the tests share one database with
            # different emulators: bulk tests turn it on with a database of their own.
            "D365_BULK_SIZE": "1",
        }
        if "D365_URL" not in overrides:
            env["D365_URL"] = (dataverse or request.getfixturevalue("dataverse")()).url
        mode = overrides.get("D365_AUTH_MODE") or "managed_identity"
        if mode == "managed_identity" and "IDENTITY_ENDPOINT" not in overrides:
            idp: Identity = request.getfixturevalue("identity")
            env |= {"D365_AUTH_MODE": mode, "IDENTITY_ENDPOINT": idp.endpoint, "IDENTITY_HEADER": idp.header}
        elif mode == "client_secret" and "D365_AUTHORITY_HOST" not in overrides:
            entra: Authority = request.getfixturevalue("authority")
            env |= {
                "D365_AUTH_MODE": mode,
                "D365_TENANT_ID": entra.tenant_id,
                "D365_CLIENT_ID": entra.client_id,
                "D365_CLIENT_SECRET": entra.client_secret,
                "D365_AUTHORITY_HOST": entra.host,
                "REQUESTS_CA_BUNDLE": str(entra.ca_bundle),
            }
        for name, value in overrides.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    return build


@dataclass(frozen=True)
class Host:
    url: str
    env: dict[str, str]
    process: ManagedProcess

    @property
    def log_path(self) -> Path:
        return self.process.log_path


@pytest.fixture
def local_host(request: pytest.FixtureRequest) -> Iterator[Callable[[dict[str, str]], Host]]:
    """`local_host(env) -> Host`: `python -m local.funchost` with `env` as its app settings.

    The rest of the environment is this process's, minus any app setting not in `env`. Hosts
    stop at teardown; a failing test's report shows each host's log.
    """
    hosts = request.node.stash.setdefault(_HOSTS, [])

    def start(env: dict[str, str]) -> Host:
        base = {name: value for name, value in os.environ.items() if name not in APP_SETTINGS}
        process = services.start_funchost(services.free_port(), env={**base, **env})
        host = Host(url=process.url, env=env, process=process)
        hosts.append(host)
        return host

    yield start
    for host in hosts:
        host.process.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.failed:
        for host in item.stash.get(_HOSTS, []):
            report.sections.append((f"funchost log {host.log_path}", host.process.log_tail(60)))
