"""Bearer tokens for Dataverse: managed identity in Azure, client secret elsewhere.

Each provider keeps its token until shortly before it expires and lets one thread at a time
refresh it. Every failure is a `D365AuthenticationError`, transient unless the credential itself
was refused: a managed-identity endpoint answering 4xx (other than 408/429), or Entra answering
`invalid_client` / `unauthorized_client` (or an AADSTS code that means the same). Endpoints down,
timing out, answering 5xx, 429, `temporarily_unavailable` or something that is not JSON are transient.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from typing import Protocol

import msal
import requests
from azure.core.exceptions import AzureError, ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.identity import ManagedIdentityCredential

from d365.config import AuthMode, DataverseConfig
from d365.errors import D365AuthenticationError
from d365.token_cache import TokenCache

logger = logging.getLogger(__name__)

# azure-core retries the managed-identity endpoint itself (5xx, 408, 429, connection errors); its
# defaults (10 retries, back-off up to 2 minutes) would outlast a push's deadline.
MI_RETRIES = 2
MI_RETRY_BACKOFF_FACTOR = 0.2
MI_RETRY_BACKOFF_MAX_SECONDS = 2.0
MI_CONNECT_TIMEOUT_SECONDS = 5.0
MI_READ_TIMEOUT_SECONDS = 10.0  # the endpoint is local to the host: a token takes milliseconds

REFUSED_CREDENTIAL_ERRORS = frozenset({"invalid_client", "unauthorized_client"})
# AADSTS codes that refuse the credential whatever `error` they come with: invalid or expired
# secret, application unknown in the tenant or disabled, client assertion invalid.
REFUSED_CREDENTIAL_AADSTS = frozenset({"7000215", "7000222", "700016", "7000112", "700027"})
_AADSTS = re.compile(r"AADSTS(\d+)")
# msal turns an App Service endpoint error into error_description "<statusCode>, <message>", and
# azure-identity puts it in its message as "Token request error: (<error>) <statusCode>, ...".
_MI_STATUS = re.compile(r"Token request error: \([^)]*\) (\d{3}),")
_DISCOVERY_STATUS = re.compile(r"HTTP status: (\d{3})")


class TokenProvider(Protocol):
    def get_token(self) -> str:
        """A bearer token for Dataverse. Raises D365AuthenticationError."""

    def invalidate(self) -> None:
        """Forget the cached token, e.g. after Dataverse answered 401."""


class _CachingTokenProvider:
    """Caching and single-flight refresh; subclasses say how to acquire and how to forget."""

    def __init__(self, *, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._cache = TokenCache(self._acquire, event="d365_token_acquired", log=logger, clock=clock)

    def get_token(self) -> str:
        return self._cache.get()

    def invalidate(self) -> None:
        self._cache.clear(then=self._forget)

    def _acquire(self) -> tuple[str, float]:
        """(token, seconds until it expires). Raises D365AuthenticationError."""
        raise NotImplementedError

    def _forget(self) -> None:
        """Drop the library's own token cache too, so the next acquire asks the endpoint."""
        raise NotImplementedError


class ManagedIdentityTokenProvider(_CachingTokenProvider):
    """The function app's system-assigned identity, or the user-assigned one named by client_id."""

    def __init__(
        self,
        scope: str,
        *,
        client_id: str | None = None,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(clock=clock)
        self._scope = scope
        self._client_id = client_id
        self._timeout = timeout
        self._credential: ManagedIdentityCredential | None = None

    def _acquire(self) -> tuple[str, float]:
        if self._credential is None:
            self._credential = ManagedIdentityCredential(
                client_id=self._client_id,
                retry_total=MI_RETRIES,
                retry_backoff_factor=MI_RETRY_BACKOFF_FACTOR,
                retry_backoff_max=MI_RETRY_BACKOFF_MAX_SECONDS,
                connection_timeout=min(MI_CONNECT_TIMEOUT_SECONDS, self._timeout),
                read_timeout=min(MI_READ_TIMEOUT_SECONDS, self._timeout),
            )
        try:
            access = self._credential.get_token(self._scope)
        except ClientAuthenticationError as exc:
            raise _managed_identity_refusal(exc) from exc
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise D365AuthenticationError(
                f"managed identity endpoint unreachable: {type(exc).__name__}", unreachable=True
            ) from exc
        except AzureError as exc:
            raise D365AuthenticationError(f"managed identity endpoint failed: {type(exc).__name__}") from exc
        except ValueError as exc:  # msal: the endpoint answered something that is not JSON (a proxy's 502 page)
            raise D365AuthenticationError(f"managed identity endpoint answered no JSON: {exc}") from exc
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
        except msal.exceptions.MsalServiceError as exc:  # discovery answered 5xx
            raise D365AuthenticationError(f"authority {self._authority} failed: {exc}") from exc
        except json.JSONDecodeError as exc:  # the token endpoint answered something that is not JSON
            raise D365AuthenticationError(f"authority {self._authority} answered no JSON") from exc
        except ValueError as exc:  # msal: discovery answered 4xx (no such tenant) or an unusable document
            status = _DISCOVERY_STATUS.search(str(exc.__context__ or ""))
            throttled = status is not None and status.group(1) in ("408", "429")
            raise D365AuthenticationError(f"authority {self._authority} rejected: {exc}", transient=throttled) from exc
        if "access_token" not in result:
            error = str(result.get("error") or "unknown error")
            description = (result.get("error_description") or "").splitlines()[:1]
            raise D365AuthenticationError(
                f"no token from {self._authority}: {error}" + (f" ({description[0]})" if description else ""),
                code=error,
                transient=not _credential_refused(error, result.get("error_description") or ""),
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
    return ManagedIdentityTokenProvider(
        config.scope, client_id=config.managed_identity_client_id, timeout=config.timeout_seconds
    )


def _credential_refused(error: str, description: str) -> bool:
    """Whether Entra refused the app's credential itself, so asking again cannot help."""
    return error in REFUSED_CREDENTIAL_ERRORS or any(
        code in REFUSED_CREDENTIAL_AADSTS for code in _AADSTS.findall(description)
    )


def _managed_identity_refusal(exc: ClientAuthenticationError) -> D365AuthenticationError:
    """Classify azure-identity's error by the endpoint's status: 5xx, 408 and 429 are transient,
    other 4xx refuse the identity; no status at all means no managed identity is configured."""
    message = exc.message or ""
    status: int | None = exc.response.status_code if exc.response is not None else None
    found = _MI_STATUS.search(message)
    if found:  # azure-identity's preamble ("configuration not found") is misleading here
        status = status or int(found.group(1))
        message = f"endpoint answered {found.group(1)}: {message[found.end() :].strip()}"
    transient = status is not None and (status >= 500 or status in (408, 429))
    return D365AuthenticationError(f"managed identity gave no token: {message}", transient=transient)
