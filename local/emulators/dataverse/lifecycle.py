"""A lead's lifecycle columns: state and status reason (docs/dataverse.md 11.1), owner, and what a
merge leaves on the subordinate (11.2).

| statecode | statuscode (default first) |
|---|---|
| 0 Open | 1 New, 2 Contacted |
| 1 Qualified | 3 Qualified |
| 2 Disqualified | 4 Lost, 5 Cannot Contact, 6 No Longer Interested, 7 Canceled |

A new lead is Open / New; `statecode` is not valid for create, so a create's status must be an Open
one. A write that carries `statecode` changes state: with a `statuscode` that must belong to the new
state, without one the state's default. A write with `statuscode` alone must name a status of the
record's current state.

UNCONFIRMED, and easy to change here:
- the answer to a status that does not belong to its state: 400 `STATUS_MISMATCH_CODE` with the
  message Dataverse is observed to give ("<n> is not a valid status code for state code
  LeadState.<state> on lead with Id <guid>."); the code is one seen from a Power Apps client;
- that `statecode` alone moves to the state's default status;
- the state and status a merge leaves on the subordinate (`MERGED_STATE`, `MERGED_STATUS`);
- the owner of a record nobody assigned (`DEFAULT_OWNER_ID`; Dataverse makes it the calling user).
"""
from __future__ import annotations

from typing import Any

from local.emulators.dataverse.errors import ODataError

OPEN, QUALIFIED, DISQUALIFIED = 0, 1, 2
NEW, CONTACTED, QUALIFIED_STATUS, LOST, CANNOT_CONTACT, NO_LONGER_INTERESTED, CANCELED = 1, 2, 3, 4, 5, 6, 7
STATE_NAMES = {OPEN: "Open", QUALIFIED: "Qualified", DISQUALIFIED: "Disqualified"}
STATUSES = {OPEN: (NEW, CONTACTED), QUALIFIED: (QUALIFIED_STATUS,),
            DISQUALIFIED: (LOST, CANNOT_CONTACT, NO_LONGER_INTERESTED, CANCELED)}
STATUS_MISMATCH_CODE = "0x80048408"  # UNCONFIRMED
MERGED_STATE, MERGED_STATUS = DISQUALIFIED, CANCELED  # UNCONFIRMED: the subordinate of a merge
DEFAULT_OWNER_ID = "1d5a0000-0000-4000-8000-00000000e001"  # UNCONFIRMED: the owner when none is named

STATE, STATUS, OWNER, MERGED, MASTER = "statecode", "statuscode", "_ownerid_value", "merged", "_masterid_value"


def new_record_defaults() -> dict[str, Any]:
    """The lifecycle values a new record starts with, before those its create names."""
    return {STATE: OPEN, STATUS: NEW, OWNER: DEFAULT_OWNER_ID, MERGED: False, MASTER: None}


def settle(old: dict[str, Any] | None, changes: dict[str, Any], lead_id: str) -> dict[str, Any]:
    """`changes` with the state and status they mean for the record `old` (None: a create).

    Raises ODataError 400 `STATUS_MISMATCH_CODE` for a status that does not belong to its state.
    """
    settled = dict(changes)
    if old is None:
        settled.pop(STATE, None)
        state = OPEN
    elif settled.get(STATE) is not None:
        state = settled[STATE]
    else:
        settled.pop(STATE, None)
        state = old.get(STATE, OPEN)
    status = settled.pop(STATUS, None)
    if status is None:
        if old is None or STATE in settled:
            settled[STATUS] = STATUSES[state][0]
        return settled
    if status not in STATUSES.get(state, ()):
        raise status_mismatch(status, state, lead_id)
    settled[STATUS] = status
    return settled


def status_mismatch(status: int, state: int, lead_id: str) -> ODataError:
    name = STATE_NAMES.get(state, str(state))
    return ODataError(400, STATUS_MISMATCH_CODE,
                      f"{status} is not a valid status code for state code LeadState.{name} on lead with Id {lead_id}.")
