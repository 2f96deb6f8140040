"""Opens PostgreSQL connections, signing in with the URL's password or a managed identity's token.

With `DATABASE_AUTH=managed_identity` (Azure Database for PostgreSQL with Microsoft Entra
authentication) the password of each new connection is an Entra access token for
`https://ossrdbms-aad.database.windows.net`, of the identity Dataverse uses
(`D365_MANAGED_IDENTITY_CLIENT_ID`, else the system-assigned one). A token is reused until shortly
before it expires; a connection already open stays open when its token expires (the server checks
the token only at sign-in). Entra sign-in needs TLS, so `sslmode=require` is added unless the URL
sets its own `sslmode`.

Errors: `DatabaseTokenUnavailable` (a `StoreUnavailable`, so transient) when no token could be had;
psycopg2's own errors from the connection attempt.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extensions
import psycopg2.extras
from azure.core.credentials import TokenCredential
from azure.core.exceptions import AzureError

from d365.token_cache import TokenCache
from shared.model.errors import StoreUnavailable

__all__ = [
    "PostgresConnector",
    "EntraPassword",
    "DatabaseTokenUnavailable",
    "POSTGRES_SCOPE",
    "DEFAULT_POOL_MAX",
    "database_url_problems",
]

logger = logging.getLogger(__name__)

POSTGRES_SCOPE = "https://ossrdbms-aad.database.windows.net/.default"
CONNECT_TIMEOUT_SECONDS = 5
APPLICATION_NAME = "lead-push"
DEFAULT_POOL_MAX = 4
# A silently dropped network (a failover, a NAT idle timeout) is noticed within about a minute.
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10, "keepalives_count": 3}


class DatabaseTokenUnavailable(StoreUnavailable):
    """No Entra token for PostgreSQL could be had (identity endpoint down, identity unknown)."""


class EntraPassword:
    """Entra access tokens for PostgreSQL, each kept until shortly before it expires."""

    def __init__(
        self,
        credential: TokenCredential,
        *,
        scope: str = POSTGRES_SCOPE,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._credential = credential
        self._scope = scope
        self._clock = clock
        self._cache = TokenCache(self._acquire, event="pg_token_acquired", log=logger, clock=clock)

    def get(self) -> str:
        """A token valid for a while yet. Raises DatabaseTokenUnavailable."""
        return self._cache.get()

    def _acquire(self) -> tuple[str, float]:
        try:
            access = self._credential.get_token(self._scope)
        except AzureError as exc:
            raise DatabaseTokenUnavailable(f"no Entra token for PostgreSQL: {type(exc).__name__}") from exc
        return access.token, max(0.0, access.expires_on - self._clock())


class PostgresConnector:
    """New connections to DATABASE_URL for the store's pool."""

    def __init__(self, url: str, *, password: EntraPassword | None = None) -> None:
        """`password`: sign in with Entra tokens instead of the URL's password."""
        self._url = url
        self._password = password
        self._sslmode: dict[str, str] = {}
        if password is not None and "sslmode" not in psycopg2.extensions.parse_dsn(url):
            self._sslmode = {"sslmode": "require"}

    def connect(self) -> Any:
        """A new psycopg2 connection. Raises DatabaseTokenUnavailable, psycopg2.Error."""
        options: dict[str, Any] = {
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "application_name": APPLICATION_NAME,
            **KEEPALIVES,
        }
        if self._password is not None:
            options |= {"password": self._password.get(), **self._sslmode}
        # The cursor factory is the connection's, not each cursor's: the psycopg2 instrumentation
        # of OpenTelemetry traces only cursors made with the connection's own factory.
        return psycopg2.connect(self._url, cursor_factory=psycopg2.extras.RealDictCursor, **options)


def database_url_problems(url: str, *, managed_identity: bool) -> list[str]:
    """What is wrong with DATABASE_URL, in words naming the setting; empty when nothing is."""
    try:
        params = psycopg2.extensions.parse_dsn(url)
    except psycopg2.ProgrammingError as exc:
        return [f"DATABASE_URL is not a PostgreSQL URL: {str(exc).strip()}"]
    problems = []
    if managed_identity and not params.get("user"):
        problems.append(
            "DATABASE_URL must name the user (the managed identity's database principal) "
            "when DATABASE_AUTH=managed_identity"
        )
    if managed_identity and params.get("password"):
        problems.append(
            "DATABASE_URL must not hold a password when DATABASE_AUTH=managed_identity "
            "(the password is the identity's token)"
        )
    return problems
