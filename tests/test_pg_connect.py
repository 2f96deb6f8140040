"""PostgreSQL sign-in with a managed identity's token, against a server that checks passwords.

The server (`tests.entra_postgres`) lets ROLE in only over TLS with its password; the identity
emulator runs in this process and makes each PostgreSQL token it issues that password, as Azure
Database for PostgreSQL accepts the current Entra token of its principals.
"""
from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg2
import pytest
from azure.core.credentials import AccessToken

from local import services
from local.emulators import identity
from shared.postgres.connect import POSTGRES_SCOPE, DatabaseTokenUnavailable, EntraPassword, PostgresConnector
from shared.runtime.container import postgres_connector
from shared.runtime.settings import DatabaseAuth, Settings, SettingsError
from tests.entra_postgres import ROLE, TokenPasswords, admin, start_tls_postgres

IDENTITY_HEADER = "pg-test-identity-header"
TOKEN_TTL_SECONDS = 2


@pytest.fixture(scope="module")
def tls_server() -> Iterator[services.PostgresServer]:
    server = start_tls_postgres()
    yield server
    server.close()


@pytest.fixture
def issued_identity(tls_server, monkeypatch) -> Iterator[tuple[identity.IdentityServer, TokenPasswords]]:
    """The identity emulator, with short-lived tokens, making each PostgreSQL token ROLE's password."""
    issued = TokenPasswords(tls_server.url)
    server = identity.serve("127.0.0.1", 0, identity_header=IDENTITY_HEADER, token_ttl=TOKEN_TTL_SECONDS,
                            on_issue=issued)
    monkeypatch.setenv("IDENTITY_ENDPOINT", server.token_url)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    yield server, issued
    server.shutdown()


def _settings(url: str, **extra: str) -> Settings:
    return Settings.from_env({
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "DATABASE_URL": url,
        "D365_URL": "https://org.crm.dynamics.com",
        "HUNTER_ALLOW_UNSIGNED": "true",
        **extra,
    })


def _token_url(server: services.PostgresServer, query: str = "") -> str:
    return f"postgresql://{ROLE}@127.0.0.1:{server.cluster.port}/postgres{query}"


def _whoami(conn) -> tuple[str, bool]:
    with conn.cursor() as cur:
        cur.execute("SELECT current_user, ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        return tuple(cur.fetchone().values())  # the app's connections answer rows as dicts


def test_each_new_connection_signs_in_with_a_current_token(tls_server, issued_identity):
    # given
    _, issued = issued_identity
    connector = postgres_connector(_settings(_token_url(tls_server), DATABASE_AUTH="managed_identity"))

    # when
    first = connector.connect()

    # then: signed in as the role, over TLS, with the token just issued
    assert _whoami(first) == (ROLE, True)
    assert len(issued.tokens) == 1
    first_token, first_expiry = issued.tokens[0]

    # when: the token expires and the next connection needs a new one
    while time.time() < first_expiry + 1:
        time.sleep(0.2)
    second = connector.connect()

    # then: a new token was issued, and that is the one the role accepts now
    assert _whoami(second) == (ROLE, True)
    assert len(issued.tokens) == 2 and issued.tokens[1][0] != first_token
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(_token_url(tls_server), password=first_token, sslmode="require", connect_timeout=5)
    # a connection open before the change stays usable
    assert _whoami(first) == (ROLE, True)
    first.close()
    second.close()


def test_a_token_is_reused_until_shortly_before_it_expires(tls_server, monkeypatch):
    # given: tokens that live an hour
    issued = TokenPasswords(tls_server.url)
    server = identity.serve("127.0.0.1", 0, identity_header=IDENTITY_HEADER, token_ttl=3600, on_issue=issued)
    monkeypatch.setenv("IDENTITY_ENDPOINT", server.token_url)
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    try:
        connector = postgres_connector(
            _settings(_token_url(tls_server), DATABASE_AUTH="managed_identity")
        )

        # when
        connections = [connector.connect() for _ in range(3)]

        # then
        assert [_whoami(c)[0] for c in connections] == [ROLE] * 3
        assert len(issued.tokens) == 1 and server.tokens_issued == 1
        for c in connections:
            c.close()
    finally:
        server.shutdown()


def test_sslmode_in_the_url_wins(tls_server, issued_identity):
    # given: the URL asks for no TLS, and the server only lets the role in over TLS
    connector = postgres_connector(
        _settings(_token_url(tls_server, "?sslmode=disable"), DATABASE_AUTH="managed_identity")
    )

    # when / then
    with pytest.raises(psycopg2.OperationalError, match="rejects connection"):
        connector.connect()


def test_a_url_with_a_password_keeps_working(tls_server):
    # given
    admin(tls_server.url, "DROP ROLE IF EXISTS leadpush_pw")
    admin(tls_server.url, "CREATE ROLE leadpush_pw LOGIN PASSWORD 'pw-for-test'")
    settings = _settings(f"postgresql://leadpush_pw:pw-for-test@127.0.0.1:{tls_server.cluster.port}/postgres")

    # when
    conn = postgres_connector(settings).connect()

    # then
    assert settings.database_auth is DatabaseAuth.PASSWORD
    with conn.cursor() as cur:
        cur.execute("SELECT current_user, current_setting('application_name')")
        assert tuple(cur.fetchone().values()) == ("leadpush_pw", "lead-push")
    conn.close()


def test_no_identity_endpoint_is_a_transient_store_error(tls_server, monkeypatch):
    # given: nothing listens where the identity endpoint should be
    monkeypatch.setenv("IDENTITY_ENDPOINT", f"http://127.0.0.1:{services.free_port()}/msi/token")
    monkeypatch.setenv("IDENTITY_HEADER", IDENTITY_HEADER)
    connector = postgres_connector(_settings(_token_url(tls_server), DATABASE_AUTH="managed_identity"))

    # when / then
    with pytest.raises(DatabaseTokenUnavailable):
        connector.connect()


@pytest.mark.parametrize(
    ("url", "auth", "problem"),
    [
        ("postgresql://u:secret@db/leadpush", "managed_identity", "must not hold a password"),
        ("postgresql://db/leadpush", "managed_identity", "must name the user"),
        ("postgresql://u@db/leadpush", "entra", "DATABASE_AUTH must be one of password, managed_identity"),
    ],
)
def test_database_settings_are_checked(url, auth, problem):
    with pytest.raises(SettingsError, match=problem):
        _settings(url, DATABASE_AUTH=auth)


class _CountingCredential:
    """Hands out numbered tokens that live an hour from the fake clock's now."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.calls = 0

    def get_token(self, *scopes: str, **kwargs: object) -> AccessToken:
        assert scopes == (POSTGRES_SCOPE,)
        self.calls += 1
        return AccessToken(f"token-{self.calls}", int(self.clock[0]) + 3600)


@pytest.mark.parametrize(("later", "calls"), [(0, 1), (3600 - 301, 1), (3600 - 299, 2), (3601, 2)])
def test_a_token_is_refreshed_five_minutes_before_it_expires(later, calls):
    # given
    now = [1_000_000.0]
    credential = _CountingCredential(now)
    password = EntraPassword(credential, clock=lambda: now[0])
    assert password.get() == "token-1"

    # when
    now[0] += later
    token = password.get()

    # then
    assert credential.calls == calls and token == f"token-{calls}"
