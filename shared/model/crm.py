"""What became of a lead in the CRM, and what the app remembers of its own writes there.

People work the records we write: they edit columns, qualify, disqualify, delete and merge leads.
The push never undoes their work: a column a person changed is theirs from then on (unless Hunter
owns it), a closed, deleted or merged lead is left alone (by default), and the lead's CRM outcome
comes back to the status API.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class CrmState(StrEnum):
    OPEN = "open"
    QUALIFIED = "qualified"
    DISQUALIFIED = "disqualified"
    MERGED = "merged"  # merged into a record another Hunter company holds: left alone
    DELETED = "deleted"  # deleted in the CRM: left alone unless D365_DELETED_LEADS=recreate


# Dataverse's lead statecode values (0 Open, 1 Qualified, 2 Disqualified).
STATE_BY_CODE = {0: CrmState.OPEN, 1: CrmState.QUALIFIED, 2: CrmState.DISQUALIFIED}
CLOSED = frozenset({CrmState.QUALIFIED, CrmState.DISQUALIFIED})


class ClosedLeads(StrEnum):
    LEAVE = "leave"  # a qualified or disqualified lead gets no write
    UPDATE_HUNTER_COLUMNS = "update_hunter_columns"  # only the columns Hunter owns


class DeletedLeads(StrEnum):
    LEAVE = "leave"  # a lead deleted in the CRM is not created again
    RECREATE = "recreate"


@dataclass(frozen=True)
class CrmOutcome:
    """The lead as the CRM last showed it (`seen_at`: when we saw it)."""

    state: CrmState
    status_code: int | None = None
    owner_id: str | None = None
    merged_into: str | None = None  # MERGED: the record it was merged into
    seen_at: datetime | None = None


@dataclass(frozen=True)
class ColumnMemory:
    """The values the app last wrote to a lead's record, by column, and the columns people changed
    since (theirs from then on, unless Hunter owns them)."""

    written: Mapping[str, Any] = field(default_factory=dict)
    people: frozenset[str] = frozenset()
