"""Reads the storage connection from app settings, as the Functions host reads a binding's
`connection`: see `shared.storage.config` for the forms it takes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from shared.runtime.env import EnvReader
from shared.storage.config import ConnectionStringStorage, ManagedIdentityStorage, StorageConfig

__all__ = ["STORAGE_SETTING", "read_storage", "storage_from_env"]

STORAGE_SETTING = "AzureWebJobsStorage"
MANAGED_IDENTITY = "managedidentity"

_ACCOUNT_NAME = re.compile(r"^[a-z0-9]{3,24}$")
_SECRET_SUFFIXES = ("clientSecret", "clientCertificate")


def storage_from_env(env: Mapping[str, str], name: str = STORAGE_SETTING) -> StorageConfig:
    """The connection named `name`. Raises SettingsError naming each problem."""
    reader = EnvReader(env)
    storage = read_storage(reader, name)
    reader.raise_if_problems()
    return storage


def read_storage(reader: EnvReader, name: str = STORAGE_SETTING) -> StorageConfig:
    """The connection named `name`, adding problems to `reader` instead of raising."""
    connection_string = reader.optional(name)
    if connection_string is not None:
        return ConnectionStringStorage(connection_string)

    def sub(key: str) -> str | None:
        return reader.optional(f"{name}__{key}")

    uri = sub("queueServiceUri")
    account = sub("accountName")
    if uri is None and account is None:
        reader.problems.append(
            f"{name} is missing: the storage account of the lead queue, either a connection string in {name} "
            f"or an identity-based connection: {name}__accountName (or {name}__queueServiceUri), with "
            f"{name}__credential=managedidentity and {name}__clientId for a user-assigned identity"
        )
        return ManagedIdentityStorage("")
    if uri is not None:
        uri = uri.rstrip("/")
        parts = urlsplit(uri)
        if parts.scheme != "https" or not parts.netloc:
            reader.problems.append(
                f"{name}__queueServiceUri must be an https URL (a token is only sent over HTTPS), got {uri!r}"
            )
    else:
        if not _ACCOUNT_NAME.match(account or ""):
            reader.problems.append(f"{name}__accountName must be 3-24 lower-case letters and digits, got {account!r}")
        uri = f"https://{account}.queue.core.windows.net"
    credential = sub("credential")
    if credential is not None and credential.lower() != MANAGED_IDENTITY:
        reader.problems.append(f"{name}__credential must be {MANAGED_IDENTITY}, got {credential!r}")
    for key in _SECRET_SUFFIXES:
        if sub(key) is not None:
            reader.problems.append(
                f"{name}__{key} is not supported: sign in to storage with a managed identity ({name}__clientId)"
            )
    return ManagedIdentityStorage(uri, client_id=sub("clientId"))
