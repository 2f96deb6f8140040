"""Dataverse settings, read from the environment and validated once.

Kept in `d365/` so the Dataverse side (client, smoke test) can be configured without the rest of
the app; `shared.runtime.settings.Settings` composes it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

DEFAULT_API_VERSION = "v9.2"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_MATCH_COLUMNS = ("emailaddress1", "websiteurl")
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_METADATA_TTL_SECONDS = 3600
DEFAULT_METADATA_FAILURE_TTL_SECONDS = 30
DEFAULT_INLINE_RETRY_AFTER_SECONDS = 5
DEFAULT_BULK_SIZE = 100
DEFAULT_PAUSE_PROBE_SECONDS = 30
MAX_BULK_SIZE = 1000  # Dataverse's limit of requests in one $batch


class AuthMode(StrEnum):
    MANAGED_IDENTITY = "managed_identity"
    CLIENT_SECRET = "client_secret"


@dataclass(frozen=True)
class DataverseConfig:
    url: str
    api_version: str = DEFAULT_API_VERSION
    auth_mode: AuthMode = AuthMode.MANAGED_IDENTITY
    managed_identity_client_id: str | None = None
    tenant_id: str | None = None
    client_id: str | None = None
    client_secret: str | None = field(default=None, repr=False)
    authority_host: str = DEFAULT_AUTHORITY_HOST
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    alternate_key: str | None = None
    match_columns: tuple[str, ...] = DEFAULT_MATCH_COLUMNS
    metadata_ttl_seconds: int = DEFAULT_METADATA_TTL_SECONDS
    metadata_failure_ttl_seconds: int = DEFAULT_METADATA_FAILURE_TTL_SECONDS
    choice_overrides_file: str | None = None
    inline_retry_after_seconds: int = DEFAULT_INLINE_RETRY_AFTER_SECONDS
    bulk_size: int = DEFAULT_BULK_SIZE
    pause_probe_seconds: int = DEFAULT_PAUSE_PROBE_SECONDS

    @property
    def scope(self) -> str:
        return f"{self.url}/.default"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/data/{self.api_version}"
