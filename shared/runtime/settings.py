"""Every setting the app reads, validated once at start-up.

`Settings.from_env(os.environ)` collects every missing or malformed variable and raises one
`SettingsError` that names all of them, so a misconfigured deployment says everything at once.

A setting holding an unresolved Key Vault reference reads as missing (shared.runtime.env). One is not
fatal: HUNTER_WEBHOOK_SECRET. A start-up error would make every function answer an opaque 500 (the health
check included); instead the app starts, names it in `unresolved_settings`, /api/health answers 503 naming
it and the webhook refuses every call with 503 until a restart resolves it. Any other required setting in
that state stops start-up with a problem naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from d365.config import DataverseConfig
from shared.model.crm import ClosedLeads, DeletedLeads
from shared.postgres.connect import DEFAULT_POOL_MAX, database_url_problems
from shared.runtime.dataverse_settings import read_dataverse
from shared.runtime.env import EnvReader, SettingsError
from shared.runtime.storage_settings import STORAGE_SETTING, read_storage
from shared.storage.config import StorageConfig
from shared.writes.ownership import DEFAULT_HUNTER_OWNED

__all__ = ["Settings", "SettingsError", "QueueRuntime", "DatabaseAuth"]

DEFAULT_QUEUE_NAME = "lead-push"
DEFAULT_SIGNATURE_TOLERANCE_SECONDS = 300
DEFAULT_STUCK_AFTER_SECONDS = 900
DEFAULT_LEAD_LEASE_SECONDS = 120
MIN_LEAD_LEASE_SECONDS = 4
HOST_JSON = Path(__file__).resolve().parents[2] / "host.json"
WEBHOOK_SECRET_SETTING = "HUNTER_WEBHOOK_SECRET"

_COLUMN_PATTERN = re.compile(r"^[a-z_*?][a-z0-9_*?]*$")
# 3-56 characters: Storage allows 63, and the poison queue adds "-poison" (7).
_QUEUE_NAME = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,54}[a-z0-9]\Z")


@dataclass(frozen=True)
class QueueRuntime:
    """The queue trigger's delivery rules, read from host.json so code and host agree."""

    max_dequeue_count: int = 5
    visibility_timeout_seconds: float = 30.0
    function_timeout_seconds: float = 300.0


class DatabaseAuth(StrEnum):
    PASSWORD = "password"
    MANAGED_IDENTITY = "managed_identity"


@dataclass(frozen=True)
class Settings:
    storage: StorageConfig
    database_url: str = field(repr=False)
    dataverse: DataverseConfig
    database_auth: DatabaseAuth = DatabaseAuth.PASSWORD
    lead_queue_name: str = DEFAULT_QUEUE_NAME
    hunter_webhook_secret: str | None = field(default=None, repr=False)
    hunter_allow_unsigned: bool = False
    hunter_signature_tolerance_seconds: int = DEFAULT_SIGNATURE_TOLERANCE_SECONDS
    stuck_after_seconds: int = DEFAULT_STUCK_AFTER_SECONDS
    database_pool_max: int = DEFAULT_POOL_MAX
    lead_lease_seconds: int = DEFAULT_LEAD_LEASE_SECONDS
    dataverse_shared_backoff: bool = True
    queue_runtime: QueueRuntime = QueueRuntime()
    hunter_owned_columns: tuple[str, ...] = DEFAULT_HUNTER_OWNED
    closed_leads: ClosedLeads = ClosedLeads.LEAVE
    deleted_leads: DeletedLeads = DeletedLeads.LEAVE
    # settings the app reads whose Key Vault reference did not resolve (read as missing)
    unresolved_settings: tuple[str, ...] = ()

    @property
    def poison_queue_name(self) -> str:
        return f"{self.lead_queue_name}-poison"

    @property
    def webhook_secret_unresolved(self) -> bool:
        """The webhook secret is configured but unreadable: no call may be accepted, signed or not."""
        return WEBHOOK_SECRET_SETTING in self.unresolved_settings

    @classmethod
    def from_env(cls, env: Mapping[str, str], *, host_json: Path = HOST_JSON) -> Settings:
        """Read and validate every setting. Raises SettingsError naming each problem."""
        reader = EnvReader(env)
        settings = cls(
            storage=read_storage(reader, STORAGE_SETTING),
            database_url=reader.required("DATABASE_URL", "PostgreSQL URL, e.g. postgresql://user@host:5432/leadpush"),
            dataverse=read_dataverse(reader),
            database_auth=reader.choice("DATABASE_AUTH", DatabaseAuth, DatabaseAuth.PASSWORD),
            lead_queue_name=_queue_name(reader, "LEAD_QUEUE_NAME"),
            hunter_webhook_secret=reader.optional(WEBHOOK_SECRET_SETTING),
            hunter_allow_unsigned=reader.flag("HUNTER_ALLOW_UNSIGNED"),
            hunter_signature_tolerance_seconds=reader.number(
                "HUNTER_SIGNATURE_TOLERANCE_SECONDS", DEFAULT_SIGNATURE_TOLERANCE_SECONDS, int
            ),
            stuck_after_seconds=reader.number("STUCK_LEAD_AFTER_SECONDS", DEFAULT_STUCK_AFTER_SECONDS, int),
            database_pool_max=reader.number("DATABASE_POOL_MAX", DEFAULT_POOL_MAX, int),
            lead_lease_seconds=reader.number("LEAD_LEASE_SECONDS", DEFAULT_LEAD_LEASE_SECONDS, int),
            dataverse_shared_backoff=_flag(reader, "DATAVERSE_SHARED_BACKOFF", default=True),
            queue_runtime=_read_queue_runtime(host_json, reader.problems),
            hunter_owned_columns=_column_patterns(reader, "D365_HUNTER_OWNED_COLUMNS", DEFAULT_HUNTER_OWNED),
            closed_leads=reader.choice("D365_CLOSED_LEADS", ClosedLeads, ClosedLeads.LEAVE),
            deleted_leads=reader.choice("D365_DELETED_LEADS", DeletedLeads, DeletedLeads.LEAVE),
            unresolved_settings=tuple(sorted(reader.unresolved)),
        )
        if settings.database_pool_max < 1:
            reader.problems.append(f"DATABASE_POOL_MAX must be at least 1, got {settings.database_pool_max}")
        if not MIN_LEAD_LEASE_SECONDS <= settings.lead_lease_seconds < settings.queue_runtime.function_timeout_seconds:
            reader.problems.append(
                f"LEAD_LEASE_SECONDS must be at least {MIN_LEAD_LEASE_SECONDS} and shorter than host.json's "
                f"functionTimeout ({settings.queue_runtime.function_timeout_seconds:.0f} s), "
                f"got {settings.lead_lease_seconds}"
            )
        if not (settings.hunter_webhook_secret or settings.hunter_allow_unsigned or settings.webhook_secret_unresolved):
            reader.problems.append(
                "HUNTER_WEBHOOK_SECRET is missing: the secret Hunter signs webhook bodies with "
                "(HUNTER_ALLOW_UNSIGNED=true accepts unsigned calls, for local work only)"
            )
        if settings.database_url:
            managed_identity = settings.database_auth is DatabaseAuth.MANAGED_IDENTITY
            reader.problems.extend(database_url_problems(settings.database_url, managed_identity=managed_identity))
        reader.raise_if_problems()
        return settings


def _column_patterns(reader: EnvReader, name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    """Comma-separated column names or globs (`hnt_*`)."""
    value = reader.optional(name)
    if value is None:
        return default
    patterns = tuple(part.strip().lower() for part in value.split(",") if part.strip())
    for pattern in patterns:
        if not _COLUMN_PATTERN.match(pattern):
            reader.problems.append(f"{name} must list column logical names or globs like hnt_*, got {pattern!r}")
    return patterns


def _flag(reader: EnvReader, name: str, *, default: bool) -> bool:
    return default if reader.optional(name) is None else reader.flag(name)


def _queue_name(reader: EnvReader, name: str) -> str:
    value = reader.optional(name, DEFAULT_QUEUE_NAME) or DEFAULT_QUEUE_NAME
    if not _QUEUE_NAME.match(value):
        reader.problems.append(f"{name} must be 3-56 lower-case letters, digits and single hyphens, got {value!r}")
    return value


def _read_queue_runtime(path: Path, problems: list[str]) -> QueueRuntime:
    try:
        host = json.loads(path.read_text())
        queues = host.get("extensions", {}).get("queues", {})
        return QueueRuntime(
            max_dequeue_count=int(queues.get("maxDequeueCount", 5)),
            visibility_timeout_seconds=_timespan_seconds(queues.get("visibilityTimeout", "00:00:00")),
            function_timeout_seconds=_timespan_seconds(host.get("functionTimeout", "00:05:00")),
        )
    except (OSError, ValueError, AttributeError) as exc:
        problems.append(f"{path.name}: cannot read extensions.queues ({exc})")
        return QueueRuntime()


def _timespan_seconds(value: str) -> float:
    """'hh:mm:ss[.fff]', as host.json writes a TimeSpan."""
    hours, minutes, seconds = value.split(":")
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
