"""The sync state of a lead as the push sees it: a claim on the lead, its stored state, and the
audit row of an attempt."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from shared.model.crm import ColumnMemory, CrmOutcome, CrmState
from shared.model.messages import LeadMessage


class ClaimStatus(StrEnum):
    CLAIMED = "claimed"  # this worker holds the lead until its lease ends
    LEASED = "leased"  # another worker holds it
    UNKNOWN = "unknown"  # no such lead: nothing was ever accepted for this company
    PAUSED = "paused"  # the pipeline is paused and another claim is probing


@dataclass(frozen=True)
class LeadState:
    """What the store knows of a lead when a worker claims it."""

    lead: LeadMessage  # the newest version accepted
    queued_version: datetime
    d365_lead_id: str | None
    d365_etag: str | None
    synced_version: datetime | None
    synced_fingerprint: str | None
    failed_version: datetime | None
    attempts: int
    memory: ColumnMemory = field(default_factory=ColumnMemory)
    crm_state: CrmState | None = None
    force_write: bool = False  # an operator's replay: through what would be left alone


@dataclass(frozen=True)
class Claim:
    status: ClaimStatus
    token: str | None = None
    state: LeadState | None = None
    leased_for_seconds: float = 0.0  # LEASED: how long the other worker's lease still runs
    throttled_for_seconds: float = 0.0  # how long every worker is to leave Dataverse alone
    paused_reason: str | None = None  # the pipeline is paused (see shared.model.pause)
    probing: bool = False  # CLAIMED while paused: this push is the probe
    probe_in_seconds: float = 0.0  # PAUSED: when the next probe may start


@dataclass(frozen=True)
class Attempt:
    """One row of the audit table."""

    outcome: str
    duration_ms: float
    failure_class: str | None = None
    http_status: int | None = None
    error_code: str | None = None
    error: str | None = None
    d365_lead_id: str | None = None
    dataverse_requests: int = 0
    correlation_id: str | None = None
    dequeue_count: int | None = None
    service_request_id: str | None = None


@dataclass(frozen=True)
class Synced:
    """What a finished push records beside its version: the memory of its write and the CRM outcome
    its answer showed (None: unchanged since the last record)."""

    memory: ColumnMemory | None = None
    crm: CrmOutcome | None = None
