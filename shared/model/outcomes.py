"""What became of one delivery of a lead: the `outcome` of its audit row, its log event and its
metric dimension."""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    CREATED = "created"  # a new Dataverse record
    UPDATED = "updated"  # an existing record took the newest version
    UNCHANGED = "unchanged"  # the newest version was already written: no request
    SKIPPED = "skipped"  # an older version's message, or the newest version failed for good
    DEFERRED = "deferred"  # Dataverse is throttling: the message comes back later
    LEASED = "leased"  # another worker holds the lead: the message comes back later
    PAUSED = "paused"  # the pipeline is paused (an org-level failure): the message comes back later
    ERROR = "error"  # a transient failure: another delivery will try again
    FAILED = "failed"  # can never succeed as it is: recorded, and the message goes to poison


WRITTEN = frozenset({Outcome.CREATED, Outcome.UPDATED})
