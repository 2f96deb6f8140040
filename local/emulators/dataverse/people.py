"""What a person does to leads in the CRM: edit, qualify, disqualify, reopen, delete, merge.

The control API (`control.py`, under `/_emulator/leads/<id>/...`) and the tests' fake Dataverse
(`tests/fakes/dataverse.py`) both act through these functions on the same store, so a person's action
leaves the same record in either. Each action is one write (a merge two) that bumps the record's
version (its ETag) and `modifiedon`, and is told to the store's write listener.

Raises ODataError: 404 `0x80040217` for a lead that does not exist, 400 for a status that does not
belong to its state (lifecycle.py) or an action the lead's state does not allow, or a reject rule's
error. Qualifying a closed lead fails as docs/dataverse.md 11.1 quotes (code UNCONFIRMED); the answer
to merging a lead into itself or into, or out of, a merged lead is the emulator's choice.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from local.emulators.dataverse.errors import INVALID_ARGUMENT, ODataError, record_not_found
from local.emulators.dataverse.lifecycle import (
    DISQUALIFIED,
    LOST,
    MASTER,
    MERGED,
    MERGED_STATE,
    MERGED_STATUS,
    NEW,
    OPEN,
    OWNER,
    QUALIFIED,
    QUALIFIED_STATUS,
    STATE,
    STATUS,
)
from local.emulators.dataverse.payload import parse_values
from local.emulators.dataverse.store import LeadStore
from local.emulators.dataverse.urlkeys import parse_guid

CLOSED_LEAD_CODE = INVALID_ARGUMENT  # UNCONFIRMED: the code of "The lead is closed ..." (docs/dataverse.md 11.1)
OWNER_COLUMN = "ownerid"


def edit(store: LeadStore, lead_id: str, values: Mapping[str, Any]) -> dict:
    """Change columns as a person does in a form: `values` as a Web API update body names them, and
    `ownerid` as a user's or team's id to assign the lead. Returns the record."""
    body = dict(values)
    owner = body.pop(OWNER_COLUMN, None)
    changes = parse_values(store.schema, body, creating=False)
    if owner is not None:
        owner_id = parse_guid(str(owner))
        if owner_id is None:
            raise ODataError(400, INVALID_ARGUMENT, f"{owner!r} is not a user or team id")
        changes[OWNER] = owner_id
    return store.change(lead_id, changes)


def qualify(store: LeadStore, lead_id: str) -> dict:
    """Qualify an open lead (Qualified / Qualified); no account, contact or opportunity is made."""
    with store.transaction():
        if _lead(store, lead_id).get(STATE) != OPEN:
            raise ODataError(400, CLOSED_LEAD_CODE, "The lead is closed and you can't convert or qualify a lead "
                                                    "that is already closed.")
        return store.change(lead_id, {STATE: QUALIFIED, STATUS: QUALIFIED_STATUS})


def disqualify(store: LeadStore, lead_id: str, status: int = LOST) -> dict:
    """Disqualify with a Disqualified status reason (4 Lost, 5 Cannot Contact, 6 No Longer Interested,
    7 Canceled)."""
    return store.change(lead_id, {STATE: DISQUALIFIED, STATUS: status})


def reopen(store: LeadStore, lead_id: str) -> dict:
    """Reactivate a lead: Open / New."""
    return store.change(lead_id, {STATE: OPEN, STATUS: NEW})


def delete(store: LeadStore, lead_id: str) -> None:
    if not store.delete_by_id(lead_id):
        raise record_not_found(lead_id)


def merge(store: LeadStore, subordinate_id: str, master_id: str) -> tuple[dict, dict]:
    """Merge `subordinate_id` into `master_id` as the CRM's Merge does: the subordinate is kept,
    deactivated (`MERGED_STATE` / `MERGED_STATUS`), `merged` true and `_masterid_value` the master;
    the master is written with no change of its columns. Returns (subordinate, master)."""
    if subordinate_id == master_id:
        raise ODataError(400, INVALID_ARGUMENT, "A record cannot be merged into itself.")
    with store.transaction():
        for lead_id, role in ((subordinate_id, "subordinate"), (master_id, "master")):
            merged_into = _lead(store, lead_id).get(MASTER)
            if merged_into is not None:
                raise ODataError(400, INVALID_ARGUMENT, f"The {role} lead {lead_id} was already merged into "
                                                        f"{merged_into}.")
        master = store.change(master_id, {})
        subordinate = store.change(subordinate_id, {STATE: MERGED_STATE, STATUS: MERGED_STATUS, MERGED: True,
                                                    MASTER: master_id})
    return subordinate, master


def _lead(store: LeadStore, lead_id: str) -> dict:
    record = store.by_id.get(lead_id)
    if record is None:
        raise record_not_found(lead_id)
    return record
