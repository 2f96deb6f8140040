"""Every setting the app reads, validated once at start-up.

`Settings.from_env(os.environ)` collects every missing or malformed variable and raises one
`SettingsError` that names all of them, so a misconfigured deployment says everything at once.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Mapping
from urllib.parse import urlsplit

DEFAULT_QUEUE_NAME = "lead-push"
DEFAULT_API_VERSION = "v9.2"
DEFAULT_AUTHORITY_HOST = "https://login.microsoftonline.com"
DEFAULT_MATCH_COLUMNS = ("emailaddress1", "websiteurl")
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_METADATA_TTL_SECONDS = 3600
DEFAULT_INLINE_RETRY_AFTER_SECONDS = 5
DEFAULT_SIGNATURE_TOLERANCE_SECONDS = 300
DEFAULT_STUCK_AFTER_SECONDS = 900
DEFAULT_STORAGE_SETTING = "AzureWebJobsStorage"
HOST_JSON = Path(__file__).resolve().parent.parent / "host.json"

_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,56}[a-z0-9]$")  # leaves room for "-poison"
_COLUMN_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class SettingsError(Exception):
    """One or more settings are missing or malformed; the message names all of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


class AuthMode(str, Enum):
    MANAGED_IDENTITY = "managed_identity"
    CLIENT_SECRET = "client_secret"


@dataclass(frozen=True)
class QueueRuntime:
    """The queue trigger's delivery rules, read from host.json so code and host agree."""

    max_dequeue_count: int = 5
    visibility_timeout_seconds: float = 30.0


@dataclass(frozen=True)
class Settings:
    storage_connection: str
    database_url: str
    d365_url: str
    lead_queue_name: str = DEFAULT_QUEUE_NAME
    storage_setting_name: str = DEFAULT_STORAGE_SETTING
    d365_api_version: str = DEFAULT_API_VERSION
    d365_auth_mode: AuthMode = AuthMode.MANAGED_IDENTITY
    d365_managed_identity_client_id: str | None = None
    d365_tenant_id: str | None = None
    d365_client_id: str | None = None
    d365_client_secret: str | None = field(default=None, repr=False)
    d365_authority_host: str = DEFAULT_AUTHORITY_HOST
    d365_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    d365_alternate_key: str | None = None
    d365_match_columns: tuple[str, ...] = DEFAULT_MATCH_COLUMNS
    d365_metadata_ttl_seconds: int = DEFAULT_METADATA_TTL_SECONDS
    d365_choice_overrides_file: str | None = None
    d365_inline_retry_after_seconds: int = DEFAULT_INLINE_RETRY_AFTER_SECONDS
    hunter_webhook_secret: str | None = field(default=None, repr=False)
    hunter_allow_unsigned: bool = False
    hunter_signature_tolerance_seconds: int = DEFAULT_SIGNATURE_TOLERANCE_SECONDS
    stuck_after_seconds: int = DEFAULT_STUCK_AFTER_SECONDS
    queue_runtime: QueueRuntime = QueueRuntime()

    @property
    def poison_queue_name(self) -> str:
        return f"{self.lead_queue_name}-poison"

    @property
    def d365_scope(self) -> str:
        return f"{self.d365_url}/.default"

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, host_json: Path = HOST_JSON) -> "Settings":
        """Read and validate every setting. Raises SettingsError naming each problem."""
        reader = _Reader(env)
        storage_setting = DEFAULT_STORAGE_SETTING
        values = dict(
            storage_setting_name=storage_setting,
            storage_connection=reader.required(storage_setting, "the storage account connection string for the lead queue"),
            database_url=reader.required("DATABASE_URL", "PostgreSQL URL, e.g. postgresql://user@host:5432/leadpush"),
            d365_url=reader.url("D365_URL", "the Dataverse environment URL, e.g. https://contoso.crm.dynamics.com"),
            lead_queue_name=reader.queue_name("LEAD_QUEUE_NAME"),
            d365_api_version=reader.optional("D365_API_VERSION", DEFAULT_API_VERSION),
            d365_auth_mode=reader.choice("D365_AUTH_MODE", AuthMode, AuthMode.MANAGED_IDENTITY),
            d365_managed_identity_client_id=reader.optional("D365_MANAGED_IDENTITY_CLIENT_ID"),
            d365_tenant_id=reader.optional("D365_TENANT_ID"),
            d365_client_id=reader.optional("D365_CLIENT_ID"),
            d365_client_secret=reader.optional("D365_CLIENT_SECRET"),
            d365_authority_host=reader.url("D365_AUTHORITY_HOST", "", default=DEFAULT_AUTHORITY_HOST),
            d365_timeout_seconds=reader.number("D365_TIMEOUT_SECONDS", DEFAULT_TIMEOUT_SECONDS, float),
            d365_alternate_key=reader.column("D365_ALTERNATE_KEY"),
            d365_match_columns=reader.columns("D365_MATCH_COLUMNS", DEFAULT_MATCH_COLUMNS),
            d365_metadata_ttl_seconds=reader.number("D365_METADATA_TTL_SECONDS", DEFAULT_METADATA_TTL_SECONDS, int),
            d365_choice_overrides_file=reader.existing_file("D365_CHOICE_OVERRIDES_FILE"),
            d365_inline_retry_after_seconds=reader.number(
                "D365_INLINE_RETRY_AFTER_SECONDS", DEFAULT_INLINE_RETRY_AFTER_SECONDS, int
            ),
            hunter_webhook_secret=reader.optional("HUNTER_WEBHOOK_SECRET"),
            hunter_allow_unsigned=reader.flag("HUNTER_ALLOW_UNSIGNED"),
            hunter_signature_tolerance_seconds=reader.number(
                "HUNTER_SIGNATURE_TOLERANCE_SECONDS", DEFAULT_SIGNATURE_TOLERANCE_SECONDS, int
            ),
            stuck_after_seconds=reader.number("STUCK_LEAD_AFTER_SECONDS", DEFAULT_STUCK_AFTER_SECONDS, int),
            queue_runtime=_read_queue_runtime(host_json, reader.problems),
        )
        if values["d365_auth_mode"] is AuthMode.CLIENT_SECRET:
            for name in ("D365_TENANT_ID", "D365_CLIENT_ID", "D365_CLIENT_SECRET"):
                if not env.get(name, "").strip():
                    reader.problems.append(f"{name} is required when D365_AUTH_MODE=client_secret")
        if not values["hunter_webhook_secret"] and not values["hunter_allow_unsigned"]:
            reader.problems.append(
                "HUNTER_WEBHOOK_SECRET is required (the secret Hunter signs webhook bodies with); "
                "set HUNTER_ALLOW_UNSIGNED=true only for local work"
            )
        if reader.problems:
            raise SettingsError(reader.problems)
        return cls(**values)


def _read_queue_runtime(path: Path, problems: list[str]) -> QueueRuntime:
    try:
        queues = json.loads(path.read_text()).get("extensions", {}).get("queues", {})
        return QueueRuntime(
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            visibility_timeout_seconds=_timespan_seconds(queues.get("visibilityTimeout", "00:00:00")),
        )
    except (OSError, ValueError, AttributeError) as exc:
        problems.append(f"{path.name}: cannot read extensions.queues ({exc})")
        return QueueRuntime()


def _timespan_seconds(value: str) -> float:
    """'hh:mm:ss[.fff]' as host.json writes TimeSpans."""
    hours, minutes, seconds = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


class _Reader:
    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

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

    def queue_name(self, name: str) -> str:
        value = self._get(name) or DEFAULT_QUEUE_NAME
        if not _QUEUE_NAME.match(value):
            self.problems.append(
                f"{name} must be 3-58 lower-case letters, digits and single hyphens, got {value!r}"
            )
        return value

    def choice(self, name: str, enum: type[Enum], default: Enum) -> Enum:
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
