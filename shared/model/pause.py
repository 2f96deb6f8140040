"""The pipeline's pause: an org-level failure of Dataverse stops every push, on every instance,
until a probe passes. Leads wait; none is marked failed, none reaches the poison queue."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class PauseReason(StrEnum):
    """What an operator fixes; the README's runbook has a section for each."""

    CREDENTIALS = "credentials"  # the token was refused, or Dataverse refused a fresh token (401)
    APPLICATION_USER = "application_user"  # no application user for the identity, or it is disabled
    PRIVILEGE = "privilege"  # the application user's security role lacks a privilege on lead
    ORG_UNAVAILABLE = "org_unavailable"  # the environment is in administration mode or disabled


@dataclass(frozen=True)
class Pause:
    reason: str
    detail: str
    opened_at: datetime
