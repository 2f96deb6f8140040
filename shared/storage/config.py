"""Where the lead queues live and how the app signs in to them, read as the Functions host reads it.

A binding's `connection` names a setting prefix (`AzureWebJobsStorage`). The host accepts either
- a connection string in the setting itself (Azurite, shared-key accounts), which wins when set; or
- an identity-based connection in `<prefix>__*` settings: `__queueServiceUri` (which wins), or
  `__accountName` for `https://<name>.queue.core.windows.net`, signed in with a managed identity
  (`__credential=managedidentity`, the default in Azure) and `__clientId` for a user-assigned one.

The app understands the same forms, so one set of app settings serves the host's trigger and the
app's own queue clients. Service-principal secrets (`__clientSecret`) are refused: no secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["ConnectionStringStorage", "ManagedIdentityStorage", "StorageConfig"]


@dataclass(frozen=True)
class ConnectionStringStorage:
    """A storage connection string (it may hold an account key, so it is never shown)."""

    connection_string: str = field(repr=False)


@dataclass(frozen=True)
class ManagedIdentityStorage:
    """A queue service endpoint reached with a managed identity's token.

    `client_id` names a user-assigned identity; None means the app's system-assigned one.
    """

    queue_service_uri: str
    client_id: str | None = None


StorageConfig = ConnectionStringStorage | ManagedIdentityStorage
