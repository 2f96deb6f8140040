"""Who owns each column of a lead record: Hunter, or the people who work the lead in the CRM.

Hunter owns the columns `D365_HUNTER_OWNED_COLUMNS` names (default `hnt_*`): they always take
Hunter's newest value. Every other mapped column is Hunter's until a person changes it: a column
whose value in the CRM differs from the value our last write sent was changed by someone else, and
keeps their value (a cleared value stays cleared) from then on. Pure: the record is read elsewhere.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from shared.model.crm import STATE_BY_CODE, ColumnMemory, CrmOutcome, CrmState

DEFAULT_HUNTER_OWNED = ("hnt_*",)
# What a write's answer or a read asks for beside the columns: the lead's CRM outcome.
CRM_COLUMNS = ("statecode", "statuscode", "_ownerid_value", "merged", "_masterid_value")


class ColumnOwnership:
    def __init__(self, hunter_owned: Sequence[str] = DEFAULT_HUNTER_OWNED) -> None:
        self._patterns = tuple(pattern.lower() for pattern in hunter_owned)

    def hunter_owns(self, column: str) -> bool:
        return any(fnmatch.fnmatchcase(column.lower(), pattern) for pattern in self._patterns)

    def hunters_only(self, payload: Mapping[str, Any]) -> dict[str, Any]:
        return {column: value for column, value in payload.items() if self.hunter_owns(column)}

    def sendable(self, payload: Mapping[str, Any], people: Iterable[str]) -> dict[str, Any]:
        """The payload without the columns people took over (Hunter's own columns always go)."""
        theirs = set(people)
        return {c: v for c, v in payload.items() if self.hunter_owns(c) or c not in theirs}

    def changed_by_people(
        self, payload: Mapping[str, Any], memory: ColumnMemory, record: Mapping[str, Any]
    ) -> frozenset[str]:
        """The columns people took over: those they had, and those whose CRM value is no longer the
        value our last write sent. A column we never wrote is not theirs yet; nor is one that already
        holds the value we send: our own write whose answer was lost, or a person who agrees
        (docs/found-by-simulation.md #12)."""
        changed = {
            column
            for column in payload
            if not self.hunter_owns(column)
            and column in memory.written
            and column in record
            and not _same(record[column], memory.written[column])
            and not _same(record[column], payload[column])
        }
        return memory.people | changed


def remember(sent: Mapping[str, Any], memory: ColumnMemory, people: frozenset[str]) -> ColumnMemory:
    """The memory after a write that sent `sent`: those values, and the columns people own."""
    return ColumnMemory({**memory.written, **sent}, frozenset(people))


def crm_outcome(record: Mapping[str, Any]) -> CrmOutcome | None:
    """The CRM outcome a read or a write's answer shows; None when it shows no state."""
    code = record.get("statecode")
    if not isinstance(code, int) or code not in STATE_BY_CODE:
        return None
    status = record.get("statuscode")
    owner = record.get("_ownerid_value")
    return CrmOutcome(
        STATE_BY_CODE[code],
        status_code=status if isinstance(status, int) else None,
        owner_id=owner if isinstance(owner, str) else None,
    )


def merged_into(record: Mapping[str, Any]) -> str | None:
    """The record this one was merged into, if it was."""
    master = record.get("_masterid_value")
    return master if record.get("merged") is True and isinstance(master, str) else None


def _same(crm_value: Any, written: Any) -> bool:
    """Equal as Dataverse stores them: an empty string reads back as null."""
    if crm_value in (None, "") and written in (None, ""):
        return True
    if isinstance(crm_value, (int, float)) and isinstance(written, (int, float)):
        return float(crm_value) == float(written)
    return bool(crm_value == written)


__all__ = ["CRM_COLUMNS", "ColumnOwnership", "CrmState", "crm_outcome", "merged_into", "remember"]
