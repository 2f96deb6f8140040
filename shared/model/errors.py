"""Domain errors of the sync use cases.

```
SyncError
├── TransientError          retrying later can succeed (Dataverse 408/429/5xx, network, database down)
│   ├── StoreUnavailable    PostgreSQL could not be reached or the connection broke
│   ├── StoreRefused        PostgreSQL refused a change: a constraint it enforces (a bug, or a race)
│   └── QueueUnavailable    the storage queue could not be reached
└── PermanentError          retrying cannot help (validation, 400/403, mapping, malformed message)
```
Dataverse's own errors (`d365.errors`) are classified into these at the use-case boundary.
"""

from __future__ import annotations


class SyncError(Exception):
    """Base of the sync errors."""


class TransientError(SyncError):
    """A later attempt may succeed."""


class StoreUnavailable(TransientError):
    """PostgreSQL could not be reached, or the connection broke mid-statement."""


class StoreRefused(TransientError):
    """A statement broke a constraint of the schema; `constraint` names it when PostgreSQL did."""

    def __init__(self, message: str, *, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class QueueUnavailable(TransientError):
    """The storage queue could not be reached."""


class PermanentError(SyncError):
    """No attempt can succeed until something outside the app changes."""
