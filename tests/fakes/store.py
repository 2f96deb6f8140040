"""An in-memory `shared.postgres.store.LeadStore`: the same verbs, the same guarded state changes, on a
clock the test moves.

Each verb mirrors its statement in shared/postgres/queries.sql (named in its docstring) and the constraints
of the migrations that the push can run into: one company per Dataverse id (the unique index, which
`reserve_lead_id` answers with False and the other writes raise as `StoreRefused`), a synced lead
has an id, an error or failure has a reason, an attempt's outcome and class go together. The
contract tests in tests/contract run the same functions against this and the real store.
"""
from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shared.model.errors import StoreRefused, StoreUnavailable
from shared.model.messages import LeadMessage, LeadRef
from shared.model.pause import Pause
from shared.model.crm import ColumnMemory, CrmOutcome, CrmState
from shared.model.sync import Attempt, Claim, ClaimStatus, LeadState, Synced
from tests.fakes.clock import FakeClock
from tests.fakes.faults import Fault, Step, no_step

_OUTCOMES = ("created", "updated", "unchanged", "skipped", "deferred", "paused", "error", "failed")


@dataclass
class Row:
    """One lead_sync row (the columns the app reads or writes)."""

    company_id: int
    status: str
    message: str
    queued_version: datetime
    correlation_id: str | None
    created_at: datetime
    updated_at: datetime
    enqueued_at: datetime | None
    d365_lead_id: str | None = None
    d365_etag: str | None = None
    synced_version: datetime | None = None
    synced_fingerprint: str | None = None
    failed_version: datetime | None = None
    attempts: int = 0
    last_error: str | None = None
    warnings: list[str] = field(default_factory=list)
    last_attempt_at: datetime | None = None
    last_success_at: datetime | None = None
    lease_token: str | None = None
    lease_until: datetime | None = None
    write_unconfirmed: bool = False
    written_values: dict[str, Any] | None = None
    people_columns: list[str] = field(default_factory=list)
    crm_state: str | None = None
    crm_status_code: int | None = None
    crm_owner_id: str | None = None
    crm_merged_into: str | None = None
    crm_seen_at: datetime | None = None
    force_write: bool = False


@dataclass
class PauseRow:
    """The pipeline_pause row."""

    reason: str
    detail: str
    opened_at: datetime
    probe_at: datetime


@dataclass(frozen=True)
class AttemptRow:
    """One sync_attempt row."""

    company_id: int
    attempted_at: datetime
    attempt: Attempt


def _ge(a: datetime | None, b: datetime | None) -> bool:
    """SQL's `a >= b`, NULL counting as false."""
    return a is not None and b is not None and a >= b


def _greatest(a: datetime | None, b: datetime | None) -> datetime | None:
    """SQL's GREATEST, which ignores NULLs."""
    values = [v for v in (a, b) if v is not None]
    return max(values) if values else None


class FakeLeadStore:
    def __init__(self, clock: FakeClock | None = None, *, step: Step = no_step) -> None:
        self.clock = clock or FakeClock()
        self.step = step
        self.rows: dict[int, Row] = {}
        self.audit: list[AttemptRow] = []
        self.throttle: dict[str, datetime] = {}  # dataverse_throttle: scope -> moment
        self.deliveries: dict[str, dict] = {}
        self.paused: PauseRow | None = None
        self.outcome_reader: dict[str, Any] = {"modified_since": None, "lease_token": None, "lease_until": None}
        self.on_claim: Callable[[int, str], None] | None = None  # told of every lease handed out
        self._lock = threading.RLock()

    connections_opened = 0

    # --- the hook and its faults ---------------------------------------------------------------

    def _call(self, kind: str, apply: Callable[[], Any]) -> Any:
        fault = self.step(f"store.{kind}")
        # A dropped connection's text, unless the fault names another (the server down: connection refused).
        cause = (fault.message if fault else "") or "server closed the connection unexpectedly"
        lost = f"PostgreSQL unavailable: {cause}"
        if fault is not None and fault.drop == "before":
            raise StoreUnavailable(lost)
        with self._lock:
            result = apply()
        if fault is not None and fault.drop == "after_commit":
            raise StoreUnavailable(lost)
        if fault is not None and fault.status is not None:
            raise ValueError(f"a store call cannot answer HTTP {fault.status}")
        return result

    def _now(self) -> datetime:
        return self.clock.now()

    # --- schema and plumbing -----------------------------------------------------------------------

    def migrate(self) -> list[str]:
        return []

    def ping(self) -> None:
        self._call("ping", lambda: None)

    def close(self) -> None:
        pass

    # --- intake ------------------------------------------------------------------------------------

    def record_queued(self, messages: Sequence[LeadMessage]) -> None:
        """queries.sql record_queued, one row after the other."""
        self._call("record_queued", lambda: [self._record_one(m) for m in messages])

    def _record_one(self, m: LeadMessage) -> None:
        now, version = self._now(), m.version
        row = self.rows.get(m.company_id)
        if row is None:
            self.rows[m.company_id] = Row(company_id=m.company_id, status="queued", message=m.to_json(),
                                          queued_version=version, correlation_id=m.correlation_id,
                                          created_at=now, updated_at=now, enqueued_at=now)
            return
        newer = version > row.queued_version
        if not (row.lease_until is not None and row.lease_until > now) and newer:
            row.status = "queued"
        if newer:
            row.message, row.correlation_id, row.attempts = m.to_json(), m.correlation_id, 0
            row.write_unconfirmed = False
        row.queued_version = max(row.queued_version, version)
        row.enqueued_at = row.updated_at = now

    def claim_delivery(self, delivery_id: str, pending: dict) -> dict | None:
        """queries.sql claim_delivery, then delivery_response: None when this call claimed the id."""

        def apply() -> dict | None:
            if delivery_id not in self.deliveries:
                self.deliveries[delivery_id] = pending
                return None
            return self.deliveries[delivery_id]

        return self._call("claim_delivery", apply)

    def remember_delivery(self, delivery_id: str, response: dict) -> None:
        """queries.sql remember_delivery: fills in the answer of a claimed id."""

        def apply() -> None:
            if delivery_id in self.deliveries:
                self.deliveries[delivery_id] = response

        self._call("remember_delivery", apply)

    # --- push ----------------------------------------------------------------------------------------

    def claim(self, company_id: int, *, lease_seconds: float, probe_seconds: float = 30.0) -> Claim:
        """queries.sql claim."""
        return self._call("claim", lambda: self._claim(company_id, lease_seconds, probe_seconds))

    def _claim(self, company_id: int, lease_seconds: float, probe_seconds: float) -> Claim:
        now = self._now()
        until = self.throttle.get("dataverse")
        pause = self.paused
        row = self.rows.get(company_id)
        free = row is not None and (row.lease_until is None or row.lease_until <= now)
        probing = pause is not None and free and pause.probe_at <= now
        if probing:
            assert pause is not None
            pause.probe_at = now + timedelta(seconds=probe_seconds)
        common: dict[str, Any] = {
            "throttled_for_seconds": (max(until, now) - now).total_seconds() if until else 0.0,
            "paused_reason": pause.reason if pause else None,
            "probe_in_seconds": (max(pause.probe_at, now) - now).total_seconds() if pause else 0.0,
        }
        if row is None:
            return Claim(ClaimStatus.UNKNOWN, **common)
        if not free:
            assert row.lease_until is not None
            return Claim(ClaimStatus.LEASED, leased_for_seconds=(row.lease_until - now).total_seconds(), **common)
        if pause is not None and not probing:
            return Claim(ClaimStatus.PAUSED, **common)
        token = str(uuid.uuid4())
        state = self._lease(row, token, lease_seconds, now)
        return Claim(ClaimStatus.CLAIMED, token=token, state=state, probing=probing, **common)

    def _lease(self, row: Row, token: str, lease_seconds: float, now: datetime) -> LeadState:
        nothing_to_write = _ge(row.synced_version, row.queued_version) or _ge(row.failed_version, row.queued_version)
        row.status = row.status if nothing_to_write else "processing"
        row.lease_token = token
        row.lease_until = now + timedelta(seconds=lease_seconds)
        row.last_attempt_at = row.updated_at = now
        if self.on_claim is not None:
            self.on_claim(row.company_id, token)
        return LeadState(lead=LeadMessage.from_data(json.loads(row.message)), queued_version=row.queued_version,
                         d365_lead_id=row.d365_lead_id, d365_etag=row.d365_etag, synced_version=row.synced_version,
                         synced_fingerprint=row.synced_fingerprint, failed_version=row.failed_version,
                         attempts=row.attempts,
                         memory=ColumnMemory(dict(row.written_values or {}), frozenset(row.people_columns)),
                         crm_state=CrmState(row.crm_state) if row.crm_state else None, force_write=row.force_write)

    def claim_due(self, company_id: int, token: str, *, limit: int, lease_seconds: float) -> list[LeadState]:
        """queries.sql claim_due: other due leads nobody holds, leased under `token`."""
        if limit < 1:
            return []

        def apply() -> list[LeadState]:
            now = self._now()
            due = sorted(
                (row for row in self.rows.values()
                 if row.status in ("queued", "error") and row.company_id != company_id
                 and (row.lease_until is None or row.lease_until <= now)
                 and (row.synced_version is None or row.queued_version > row.synced_version)
                 and (row.failed_version is None or row.queued_version > row.failed_version)),
                key=lambda row: row.updated_at, reverse=True)[:limit]
            return [self._lease(row, token, lease_seconds, now) for row in due]

        return self._call("claim_due", apply)

    def finish_synced(self, company_id: int, token: str, attempt: Attempt, *, version: datetime, etag: str | None,
                      fingerprint: str | None, warnings: Sequence[str], synced: Synced | None = None) -> bool:
        """queries.sql finish_synced (the lead id is the attempt's)."""

        def change(row: Row, now: datetime) -> None:
            self._remember(row, synced, now)
            status = "synced" if version >= row.queued_version else "queued"
            lead_id = _uuid_text(attempt.d365_lead_id)
            if status == "synced" and lead_id is None:
                raise StoreRefused('violates check constraint "lead_sync_synced_has_id"')
            self._check_unique_id(company_id, lead_id)
            row.status, row.d365_lead_id, row.d365_etag = status, lead_id, etag
            row.synced_version = _greatest(row.synced_version, version)
            row.synced_fingerprint, row.failed_version = fingerprint, None
            row.write_unconfirmed = False
            row.attempts += 1
            row.last_error, row.warnings, row.last_success_at = None, list(warnings), now

        return self._call("finish_synced", lambda: self._audited(company_id, token, attempt, change))

    def release(self, company_id: int, token: str, attempt: Attempt) -> bool:
        """queries.sql release."""

        def change(row: Row, now: datetime) -> None:
            if _ge(row.failed_version, row.queued_version):
                row.status = "failed"
            elif _ge(row.synced_version, row.queued_version):
                row.status = "synced"
            else:
                row.status = "queued"
            if attempt.error is not None:
                row.last_error = attempt.error

        return self._call("release", lambda: self._audited(company_id, token, attempt, change))

    def finish_failure(self, company_id: int, token: str, attempt: Attempt, *, version: datetime,
                       final: bool, unconfirmed_write: bool = False) -> bool:
        """queries.sql finish_failure."""
        status = "failed" if final else "error"

        def change(row: Row, now: datetime) -> None:
            unconfirmed = row.write_unconfirmed or unconfirmed_write
            kept_in_error = final and attempt.failure_class == "transient" and unconfirmed
            new_status = "queued" if row.queued_version > version else ("error" if kept_in_error else status)
            if new_status in ("error", "failed") and attempt.error is None:
                raise StoreRefused('violates check constraint "lead_sync_error_has_reason"')
            row.status = new_status
            row.write_unconfirmed = unconfirmed
            if final and not kept_in_error:
                row.failed_version = version
            row.attempts += 1
            row.last_error = attempt.error

        return self._call("finish_failure", lambda: self._audited(company_id, token, attempt, change))

    def _audited(self, company_id: int, token: str | None, attempt: Attempt,
                 change: Callable[[Row, datetime], None]) -> bool:
        """`WITH changed AS (<guarded change>) <insert_attempt>`: all or nothing, True when it matched."""
        row = self.rows.get(company_id)
        if row is None or token is None or row.lease_token != token:
            return False
        _check_attempt(attempt)
        now = self._now()
        before = replace(row, warnings=list(row.warnings))
        try:
            change(row, now)
        except Exception:
            self.rows[company_id] = before
            raise
        row.lease_token = row.lease_until = None
        row.updated_at = now
        self.audit.append(AttemptRow(company_id, now, attempt))
        return True

    def record_rejected_message(self, company_id: int, reason: str, *, dequeue_count: int | None) -> None:
        """queries.sql mark_rejected, then its audit row (written even for an unknown lead)."""

        def apply() -> None:
            now = self._now()
            row = self.rows.get(company_id)
            if row is not None:
                if not (row.lease_until is not None and row.lease_until > now):
                    row.status = "failed"
                row.failed_version, row.attempts, row.last_error = row.queued_version, row.attempts + 1, reason
                row.updated_at = now
            attempt = Attempt(outcome="failed", failure_class="permanent", error=reason, duration_ms=0.0,
                              dequeue_count=dequeue_count)
            self.audit.append(AttemptRow(company_id, now, attempt))

        self._call("record_rejected_message", apply)

    def publish_throttle(self, until: datetime, *, scope: str = "dataverse") -> None:
        """queries.sql publish_throttle: per scope, the later moment holds."""

        def apply() -> None:
            later = _greatest(self.throttle.get(scope), until)
            assert later is not None
            self.throttle[scope] = later

        self._call("publish_throttle", apply)

    def throttle_marks(self) -> dict[str, datetime]:
        """queries.sql throttle_marks."""
        return self._call("throttle_marks", lambda: dict(self.throttle))

    def open_pause(self, reason: str, detail: str, *, probe_seconds: float) -> bool:
        """queries.sql open_pause."""

        def apply() -> bool:
            probe_at = self._now() + timedelta(seconds=probe_seconds)
            opened = self.paused is None
            if self.paused is None:
                self.paused = PauseRow(reason, detail, self._now(), probe_at)
            else:
                self.paused.reason, self.paused.detail, self.paused.probe_at = reason, detail, probe_at
            return opened

        return self._call("open_pause", apply)

    def close_pause(self) -> str | None:
        """queries.sql close_pause."""

        def apply() -> str | None:
            closed, self.paused = self.paused, None
            return closed.reason if closed else None

        return self._call("close_pause", apply)

    def probe_again(self) -> None:
        """queries.sql probe_again."""

        def apply() -> None:
            if self.paused is not None:
                self.paused.probe_at = self._now()

        self._call("probe_again", apply)

    def pause(self) -> Pause | None:
        """queries.sql pause."""

        def apply() -> Pause | None:
            return Pause(self.paused.reason, self.paused.detail, self.paused.opened_at) if self.paused else None

        return self._call("pause", apply)

    def reserve_lead_id(self, company_id: int, token: str, lead_id: str) -> bool:
        """queries.sql reserve_lead_id; the unique index on d365_lead_id answers False."""

        def apply() -> bool:
            row = self.rows.get(company_id)
            if row is None or row.lease_token != token:
                return False
            wanted = _uuid_text(lead_id)
            if any(other.d365_lead_id == wanted for other in self.rows.values() if other is not row):
                return False
            row.d365_lead_id, row.d365_etag, row.updated_at = wanted, None, self._now()
            return True

        return self._call("reserve_lead_id", apply)

    def _check_unique_id(self, company_id: int, lead_id: str | None) -> None:
        if lead_id is not None and any(r.d365_lead_id == lead_id for c, r in self.rows.items() if c != company_id):
            raise StoreRefused('duplicate key value violates unique constraint '
                                                  '"lead_sync_d365_lead_id"')

    # --- reading -----------------------------------------------------------------------------------

    @staticmethod
    def _remember(row: Row, synced: Synced | None, now: datetime) -> None:
        if synced is not None and synced.memory is not None:
            row.written_values = json.loads(json.dumps(dict(synced.memory.written), default=str))
            row.people_columns = sorted(synced.memory.people)
        if synced is not None and synced.crm is not None:
            crm = synced.crm
            row.crm_state, row.crm_status_code, row.crm_seen_at = str(crm.state), crm.status_code, now
            row.crm_owner_id, row.crm_merged_into = _uuid_text(crm.owner_id), _uuid_text(crm.merged_into)
        row.force_write = False

    def lease_outcome_reader(self, token: str, *, lease_seconds: float) -> tuple[bool, datetime | None]:
        """queries.sql lease_outcome_reader."""

        def apply() -> tuple[bool, datetime | None]:
            now = self._now()
            if self.outcome_reader["lease_until"] is not None and self.outcome_reader["lease_until"] > now:
                return False, None
            self.outcome_reader.update(lease_token=token, lease_until=now + timedelta(seconds=lease_seconds))
            return True, self.outcome_reader["modified_since"]

        return self._call("lease_outcome_reader", apply)

    def advance_outcome_reader(self, token: str, since: datetime) -> bool:
        """queries.sql advance_outcome_reader."""

        def apply() -> bool:
            if self.outcome_reader["lease_token"] != token:
                return False
            self.outcome_reader["modified_since"] = _greatest(self.outcome_reader["modified_since"], since)
            return True

        return self._call("advance_outcome_reader", apply)

    def release_outcome_reader(self, token: str) -> None:
        """queries.sql release_outcome_reader."""

        def apply() -> None:
            if self.outcome_reader["lease_token"] == token:
                self.outcome_reader.update(lease_token=None, lease_until=None)

        self._call("release_outcome_reader", apply)

    def record_crm_outcome(self, d365_lead_id: str, outcome: CrmOutcome) -> tuple[int, LeadRef | None] | None:
        """queries.sql record_crm_outcome."""

        def apply() -> tuple[int, LeadRef | None] | None:
            lead_id, master = _uuid_text(d365_lead_id), _uuid_text(outcome.merged_into)
            row = next((r for r in self.rows.values() if r.d365_lead_id == lead_id), None)
            if row is None:
                return None
            before, now = row.crm_state, self._now()
            free = master is not None and not any(r.d365_lead_id == master for r in self.rows.values())
            if free:
                row.d365_lead_id, row.d365_etag, row.crm_merged_into = master, None, None
            elif master is not None:
                row.crm_state, row.crm_merged_into = "merged", master
            else:
                row.crm_state, row.crm_merged_into = str(outcome.state), None
            row.crm_status_code, row.crm_owner_id, row.crm_seen_at = outcome.status_code, _uuid_text(
                outcome.owner_id), now
            reopened = before in ("qualified", "disqualified") and master is None and outcome.state == "open"
            if reopened:
                row.status, row.synced_version, row.enqueued_at = "queued", None, now
            row.updated_at = now
            due = LeadRef(row.company_id, row.queued_version, row.correlation_id or "") if reopened else None
            return row.company_id, due

        return self._call("record_crm_outcome", apply)

    def count_by_crm_state(self) -> dict[str, int]:
        def apply() -> dict[str, int]:
            counts: dict[str, int] = {}
            for row in self.rows.values():
                if row.crm_state is not None:
                    counts[row.crm_state] = counts.get(row.crm_state, 0) + 1
            return counts

        return self._call("count_by_crm_state", apply)

    def lead_state(self, company_id: int) -> dict | None:
        """queries.sql lead_state."""

        def apply() -> dict | None:
            row = self.rows.get(company_id)
            if row is None:
                return None
            return {"company_id": row.company_id, "status": row.status, "d365_lead_id": row.d365_lead_id,
                    "attempts": row.attempts, "last_error": row.last_error, "warnings": list(row.warnings),
                    "correlation_id": row.correlation_id, "created_at": row.created_at,
                    "updated_at": row.updated_at, "last_attempt_at": row.last_attempt_at,
                    "last_success_at": row.last_success_at, "crm_state": row.crm_state,
                    "crm_status_code": row.crm_status_code, "crm_owner_id": row.crm_owner_id,
                    "crm_merged_into": row.crm_merged_into, "crm_seen_at": row.crm_seen_at}

        return self._call("lead_state", apply)

    def count_by_status(self) -> dict[str, int]:
        def apply() -> dict[str, int]:
            counts: dict[str, int] = {}
            for row in self.rows.values():
                counts[row.status] = counts.get(row.status, 0) + 1
            return counts

        return self._call("count_by_status", apply)

    # --- replay and sweep --------------------------------------------------------------------------

    def reset_for_replay(self, company_id: int) -> None:
        """queries.sql reset_for_replay."""

        def apply() -> None:
            row = self.rows.get(company_id)
            if row is not None:
                row.status, row.attempts, row.failed_version, row.force_write = "queued", 0, None, True
                row.synced_version = row.synced_fingerprint = None
                row.enqueued_at = row.updated_at = self._now()

        self._call("reset_for_replay", apply)

    def claim_stuck(self, *, age_seconds: int, oldest_waiting: datetime | None = None,
                    limit: int = 500) -> list[LeadRef]:
        """queries.sql claim_stuck."""

        def apply() -> list[LeadRef]:
            now = self._now()
            stale = sorted(
                (row for row in self.rows.values()
                 if row.status in ("queued", "processing", "error")
                 and row.updated_at < now - timedelta(seconds=age_seconds)
                 and (row.lease_until is None or row.lease_until < now)
                 and (oldest_waiting is None or row.enqueued_at is None or row.enqueued_at < oldest_waiting)),
                key=lambda row: row.updated_at)[:limit]
            refs = []
            for row in stale:
                if row.status == "processing":
                    row.status = "queued"
                row.enqueued_at = row.updated_at = now
                refs.append(LeadRef(company_id=row.company_id, version=row.queued_version,
                                    correlation_id=row.correlation_id or ""))
            return refs

        return self._call("claim_stuck", apply)

    # --- for tests -----------------------------------------------------------------------------------

    def attempts_of(self, company_id: int) -> list[Attempt]:
        """The audit rows of one lead, oldest first."""
        return [row.attempt for row in self.audit if row.company_id == company_id]

    def lease_valid(self, company_id: int, token: str) -> bool:
        """Whether `token` still holds the lead's lease at the clock's time."""
        row = self.rows.get(company_id)
        return (row is not None and row.lease_token == token and row.lease_until is not None
                and row.lease_until > self._now())


def _uuid_text(lead_id: str | None) -> str | None:
    """As PostgreSQL's uuid column stores and prints it; raises DataError for anything else."""
    if lead_id is None:
        return None
    try:
        return str(uuid.UUID(lead_id))
    except ValueError:
        raise StoreRefused(f'invalid input syntax for type uuid: "{lead_id}"') from None


def _check_attempt(attempt: Attempt) -> None:
    """The sync_attempt constraints."""
    if attempt.outcome not in _OUTCOMES:
        raise StoreRefused('violates check constraint "sync_attempt_outcome"')
    failure = attempt.outcome in ("error", "failed")
    if failure != (attempt.failure_class is not None) or attempt.failure_class not in (None, "transient",
                                                                                       "permanent"):
        raise StoreRefused('violates check constraint "sync_attempt_class"')


__all__ = ["AttemptRow", "Fault", "FakeLeadStore", "Row"]
