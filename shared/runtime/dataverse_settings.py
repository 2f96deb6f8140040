"""Reads the D365_* app settings into `d365.config.DataverseConfig`."""

from __future__ import annotations

from collections.abc import Mapping

from d365.config import (
    DEFAULT_API_VERSION,
    DEFAULT_AUTHORITY_HOST,
    DEFAULT_BULK_SIZE,
    DEFAULT_INLINE_RETRY_AFTER_SECONDS,
    DEFAULT_MATCH_COLUMNS,
    DEFAULT_METADATA_FAILURE_TTL_SECONDS,
    DEFAULT_METADATA_TTL_SECONDS,
    DEFAULT_PAUSE_PROBE_SECONDS,
    DEFAULT_TIMEOUT_SECONDS,
    MAX_BULK_SIZE,
    AuthMode,
    DataverseConfig,
)
from shared.runtime.env import EnvReader


def dataverse_from_env(env: Mapping[str, str]) -> DataverseConfig:
    """Read the D365_* settings. Raises SettingsError naming each problem."""
    reader = EnvReader(env)
    config = read_dataverse(reader)
    reader.raise_if_problems()
    return config


def read_dataverse(reader: EnvReader) -> DataverseConfig:
    """Read the D365_* settings, adding problems to `reader` instead of raising."""
    config = DataverseConfig(
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
        pause_probe_seconds=reader.number("D365_PAUSE_PROBE_SECONDS", DEFAULT_PAUSE_PROBE_SECONDS, int),
    )
    if not 1 <= config.bulk_size <= MAX_BULK_SIZE:
        reader.problems.append(f"D365_BULK_SIZE must be 1 (no bulk writes) to {MAX_BULK_SIZE}, got {config.bulk_size}")
    if config.pause_probe_seconds < 1:
        reader.problems.append(f"D365_PAUSE_PROBE_SECONDS must be at least 1, got {config.pause_probe_seconds}")
    if config.auth_mode is AuthMode.CLIENT_SECRET:
        for name in ("D365_TENANT_ID", "D365_CLIENT_ID", "D365_CLIENT_SECRET"):
            if reader.optional(name) is None:
                reader.problems.append(f"{name} is required when D365_AUTH_MODE=client_secret")
    return config
