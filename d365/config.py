"""Dataverse settings, read from the environment and validated once.

Kept in `d365/` so the Dataverse side (client, smoke test) can be configured without the rest of
the app; `shared.runtime.settings.Settings` composes it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, StrEnum
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

DEFAULT_API_VERSION = "v9.2"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_MATCH_COLUMNS = ("emailaddress1", "websiteurl")
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_METADATA_TTL_SECONDS = 3600
DEFAULT_METADATA_FAILURE_TTL_SECONDS = 30
DEFAULT_INLINE_RETRY_AFTER_SECONDS = 5
DEFAULT_BULK_SIZE = 100
MAX_BULK_SIZE = 1000  # Dataverse's limit of requests in one $batch

_E = TypeVar("_E", bound=Enum)
_COLUMN_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(Exception):
    """One or more settings are missing or malformed; the message names all of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


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

    @property
    def scope(self) -> str:
        return f"{self.url}/.default"

    @property
    def api_base(self) -> str:
        return f"{self.url}/api/data/{self.api_version}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> DataverseConfig:
        """Read the D365_* settings. Raises SettingsError naming each problem."""
        reader = EnvReader(env)
        config = cls.read(reader)
        reader.raise_if_problems()
        return config

    @classmethod
    def read(cls, reader: EnvReader) -> DataverseConfig:
        """Read the D365_* settings, adding problems to `reader` instead of raising."""
        config = cls(
            url=reader.url("D365_URL", "the Dataverse environment URL, e.g. https://contoso.crm.dynamics.com"),
            api_version=reader.optional("D365_API_VERSION") or DEFAULT_API_VERSION,
            auth_mode=reader.choice("D365_AUTH_MODE", AuthMode, AuthMode.MANAGED_IDENTITY),
            managed_identity_client_id=reader.optional("D365_MANAGED_IDENTITY_CLIENT_ID"),
            tenant_id=reader.optional("D365_TENANT_ID"),
            client_id=reader.optional("D365_CLIENT_ID"),
            client_secret=reader.optional("D365_CLIENT_SECRET"),
            authority_host=reader.url("D365_AUTHORITY_HOST", "", default=DEFAULT_AUTHORITY_HOST),
            timeout_seconds=reader.number("D365_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS, float),
            alternate_key=reader.column("D365_ALTERNATE_KEY"),
            match_columns=reader.columns("D365_MATCH_COLUMNS", DEFAULT_MATCH_COLUMNS),
            metadata_ttl_seconds=reader.number("D365_METADATA_TTL_SECONDS", DEFAULT_METADATA_TTL_SECONDS, int),
            metadata_failure_ttl_seconds=reader.number(
                "D365_METADATA_FAILURE_TTL_SECONDS", DEFAULT_METADATA_FAILURE_TTL_SECONDS, int
            ),
            choice_overrides_file=reader.existing_file("D365_CHOICE_OVERRIDES_FILE"),
            inline_retry_after_seconds=reader.number(
                "D365_INLINE_RETRY_AFTER_SECONDS", DEFAULT_INLINE_RETRY_AFTER_SECONDS, int
            ),
            bulk_size=reader.number("D365_BULK_SIZE", DEFAULT_BULK_SIZE, int),
        )
        if not 1 <= config.bulk_size <= MAX_BULK_SIZE:
            reader.problems.append(
                f"D365_BULK_SIZE must be 1 (no bulk writes) to {MAX_BULK_SIZE}, got {config.bulk_size}"
            )
        if config.auth_mode is AuthMode.CLIENT_SECRET:
            for name in ("D365_TENANT_ID", "D365_CLIENT_ID", "D365_CLIENT_SECRET"):
                if reader.optional(name) is None:
                    reader.problems.append(f"{name} is required when D365_AUTH_MODE=client_secret")
        return config


class EnvReader:
    """Reads typed values from an environment mapping, collecting every problem."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def raise_if_problems(self) -> None:
        if self.problems:
            raise SettingsError(self.problems)

    def _get(self, name: str) -> str | None:
        value = self.env.get(name)
        return value.strip() if value and value.strip() else None

    def optional(self, name: str, default: str | None = None) -> str | None:
        return self._get(name) or default

    def required(self, name: str, meaning: str) -> str:
        value = self._get(name)
        if value is None:
            self.problems.append(f"{name} is missing: {meaning}")
            return ""
        return value

    def url(self, name: str, meaning: str, *, default: str | None = None) -> str:
        value = self._get(name) or default
        if value is None:
            self.problems.append(f"{name} is missing: {meaning}")
            return ""
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problems.append(f"{name} must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def choice(self, name: str, enum: type[_E], default: _E) -> _E:
        value = self._get(name)
        if value is None:
            return default
        try:
            return enum(value.lower())
        except ValueError:
            allowed = ", ".join(m.value for m in enum)
            self.problems.append(f"{name} must be one of {allowed}, got {value!r}")
            return default

    def number(self, name: str, default, kind):
        value = self._get(name)
        if value is None:
            return default
        try:
            number = kind(value)
        except ValueError:
            self.problems.append(f"{name} must be a number, got {value!r}")
            return default
        if number < 0:
            self.problems.append(f"{name} must not be negative, got {value!r}")
        return number

    def flag(self, name: str) -> bool:
        value = (self._get(name) or "").lower()
        if value in _TRUE:
            return True
        if value not in _FALSE:
            self.problems.append(f"{name} must be true or false, got {value!r}")
        return False

    def column(self, name: str) -> str | None:
        value = self._get(name)
        if value is not None and not _COLUMN_NAME.match(value):
            self.problems.append(f"{name} must be a Dataverse column logical name, got {value!r}")
        return value

    def columns(self, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.env.get(name)
        if value is None:
            return default
        if value.strip().lower() in ("", "none", "off"):
            return ()
        names = tuple(part.strip() for part in value.split(",") if part.strip())
        for column in names:
            if not _COLUMN_NAME.match(column):
                self.problems.append(f"{name} must list column logical names, got {column!r}")
        return names

    def existing_file(self, name: str) -> str | None:
        value = self._get(name)
        if value is not None and not Path(value).is_file():
            self.problems.append(f"{name} names a file that does not exist: {value!r}")
        return value
