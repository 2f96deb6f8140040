"""Bearer tokens for Dataverse: managed identity in Azure, client secret elsewhere.

Each provider keeps its token until shortly before it expires and lets one thread at a time
refresh it. Every failure is a `D365AuthenticationError` (transient when the token endpoint could
not be reached).
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable, Protocol

import msal
import requests
from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError
from azure.identity import ManagedIdentityCredential

from d365.config import AuthMode, DataverseConfig
from d365.errors import D365AuthenticationError

logger = logging.getLogger(__name__)

REFRESH_BEFORE_EXPIRY_SECONDS = 300.0


class TokenProvider(Protocol):
    def get_token(self) -> str:
        """A bearer token for Dataverse. Raises D365AuthenticationError."""

    def invalidate(self) -> None:
        """Forget the cached token, e.g. after Dataverse answered 401."""


class _CachingTokenProvider:
    """Caching and single-flight refresh; subclasses say how to acquire and how to forget."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0

    def get_token(self) -> str:
        with self._lock:
            if self._token is not None and self._clock() < self._refresh_at:
                return self._token
            token, expires_in = self._acquire()
            # A token shorter-lived than twice the margin is still reused for half its life.
            self._refresh_at = self._clock() + expires_in - min(REFRESH_BEFORE_EXPIRY_SECONDS, expires_in / 2)
            self._token = token
            logger.info("d365_token_acquired expires_in=%s", int(expires_in), extra={"expires_in": int(expires_in)})
            return token

    def invalidate(self) -> None:
        with self._lock:
            self._token = None
            self._forget()

    def _acquire(self) -> tuple[str, float]:
        """(token, seconds until it expires). Raises D365AuthenticationError."""
        raise NotImplementedError

    def _forget(self) -> None:
        """Drop the library's own token cache too, so the next acquire asks the endpoint."""
        raise NotImplementedError


class ManagedIdentityTokenProvider(_CachingTokenProvider):
    """The function app's system-assigned identity, or the user-assigned one named by client_id."""

    def __init__(self, scope: str, *, client_id: str | None = None, clock: Callable[[], float] = time.time) -> None:
        super().__init__(clock=clock)
        self._scope = scope
        self._client_id = client_id
        self._credential: ManagedIdentityCredential | None = None

    def _acquire(self) -> tuple[str, float]:
        if self._credential is None:
            self._credential = ManagedIdentityCredential(client_id=self._client_id)
        try:
            access = self._credential.get_token(self._scope)
        except ServiceRequestError as exc:
            raise D365AuthenticationError(
                f"managed identity endpoint unreachable: {exc}", unreachable=True
            ) from exc
        except ClientAuthenticationError as exc:
            raise D365AuthenticationError(f"managed identity gave no token: {exc.message}") from exc
        return access.token, max(0.0, access.expires_on - self._clock())

    def _forget(self) -> None:
        self._credential = None


class ClientSecretTokenProvider(_CachingTokenProvider):
    """An app registration's client secret (client credentials flow) against an Entra authority."""

    def __init__(
        self,
        scope: str,
        *,
        tenant_id: str,
        client_id: str,
        client_secret: str,
        authority_host: str,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock=clock)
        self._scope = scope
        self._tenant_id = tenant_id
        self._client_id = client_id
        self._client_secret = client_secret
        self._authority = f"{authority_host.rstrip('/')}/{tenant_id}"
        self._timeout = timeout
        self._app: msal.ConfidentialClientApplication | None = None

    def _acquire(self) -> tuple[str, float]:
        try:
            if self._app is None:
                self._app = msal.ConfidentialClientApplication(
                    self._client_id,
                    client_credential=self._client_secret,
                    authority=self._authority,
                    # Without it msal asks login.microsoftonline.com about any host it does not
                    # know (a sovereign cloud, a local authority); for hosts it knows it skips
                    # the call either way, so False is right everywhere.
                    instance_discovery=False,
                    timeout=self._timeout,
                )
            result = self._app.acquire_token_for_client(scopes=[self._scope])
        except requests.RequestException as exc:
            raise D365AuthenticationError(
                f"authority {self._authority} unreachable: {type(exc).__name__}", unreachable=True
            ) from exc
        except ValueError as exc:  # msal: the authority's discovery document is not usable
            raise D365AuthenticationError(f"authority {self._authority} rejected: {exc}") from exc
        if "access_token" not in result:
            description = (result.get("error_description") or "").splitlines()[:1]
            raise D365AuthenticationError(
                f"no token from {self._authority}: {result.get('error', 'unknown error')}"
                + (f" ({description[0]})" if description else ""),
                code=str(result.get("error", "")),
            )
        return result["access_token"], float(result.get("expires_in", 0))

    def _forget(self) -> None:
        self._app = None


def build_token_provider(config: DataverseConfig) -> TokenProvider:
    """The provider D365_AUTH_MODE asks for."""
    if config.auth_mode is AuthMode.CLIENT_SECRET:
        return ClientSecretTokenProvider(
            config.scope,
            tenant_id=config.tenant_id or "",
            client_id=config.client_id or "",
            client_secret=config.client_secret or "",
            authority_host=config.authority_host,
            timeout=config.timeout_seconds,
        )
    return ManagedIdentityTokenProvider(config.scope, client_id=config.managed_identity_client_id)
