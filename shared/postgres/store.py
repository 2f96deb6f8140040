"""PostgreSQL: the sync state of every lead and the audit of every attempt.

All SQL lives in `queries.sql` (by name) and `migrations/` (numbered, forward only). Every verb is
one statement in autocommit on a connection borrowed for that statement only: no connection is
held while Dataverse is called, and nothing depends on session state, so the store works through
PgBouncer in transaction mode. A lead is owned through a lease on its row (`claim`), and every
state change after that is guarded by the lease's token. Driver errors that mean the database is
unreachable become `StoreUnavailable`, a transient error.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from shared.model.crm import ColumnMemory, CrmState
from shared.model.errors import StoreRefused
from shared.model.messages import LeadMessage, LeadRef
from shared.model.sync import Attempt, Claim, ClaimStatus, LeadState, Synced
from shared.postgres.connect import DEFAULT_POOL_MAX, PostgresConnector
from shared.postgres.crm_verbs import CrmVerbs
from shared.postgres.migrations_runner import apply_migrations
from shared.postgres.pause_verbs import PauseVerbs
from shared.postgres.pool import Database
from shared.postgres.queries import Q


def _with_attempt(change: str) -> str:
    """A guarded state change and its audit row as one statement (atomic in autocommit, one round
    trip); it returns a row only if the change matched."""
    return f"WITH changed AS ({Q[change]}) {Q['insert_attempt']}"


_AUDITED = {name: _with_attempt(name) for name in ("finish_synced", "release", "finish_failure")}
_AUDIT_ONLY = f"WITH changed AS (SELECT %(company_id)s::bigint AS company_id) {Q['insert_attempt']}"


class LeadStore(PauseVerbs, CrmVerbs):
    """Sync state in PostgreSQL, shared by the worker threads of one process."""

    def __init__(
        self,
        database_url: str | None = None,
        *,
        connect: Callable[[], Any] | None = None,
        pool_max: int = DEFAULT_POOL_MAX,
    ) -> None:
        if connect is None:
            if database_url is None:
                raise ValueError("LeadStore needs a database URL or a connection factory")
            connect = PostgresConnector(database_url).connect
        self._db = Database(connect, pool_max)
        self._run = self._db.run

    @property
    def connections_opened(self) -> int:
        return self._db.connections_opened

    def close(self) -> None:
        self._db.close()

    def _execute(self, name: str, params: dict[str, Any] | None = None, *, fetch: str | None = None) -> Any:
        return self._run(Q[name], params, fetch=fetch)

    # --- schema -----------------------------------------------------------------------------

    def migrate(self) -> list[str]:
        """Apply the migrations not yet applied. Raises StoreUnavailable."""
        return apply_migrations(self._db)

    def ping(self) -> None:
        """Raises StoreUnavailable when PostgreSQL does not answer."""
        self._execute("ping", fetch="one")

    # --- intake -----------------------------------------------------------------------------

    def record_queued(self, messages: Sequence[LeadMessage]) -> None:
        """Keep each lead as its company's newest version, if it is newer than the one stored."""
        rows = [
            {
                "company_id": m.company_id,
                "message": m.to_json(),
                "version": m.version,
                "correlation_id": m.correlation_id,
            }
            for m in messages
        ]
        self._run(Q["record_queued"], rows=rows)

    def claim_delivery(self, delivery_id: str, pending: dict) -> dict | None:
        """Claim a webhook delivery id with a placeholder answer; None when this call claimed it,
        else what an earlier call with that id stored."""
        if self._execute("claim_delivery", {"delivery_id": delivery_id, "response": json.dumps(pending)}, fetch="one"):
            return None
        row = self._execute("delivery_response", {"delivery_id": delivery_id}, fetch="one")
        return row["response"] if row else pending

    def remember_delivery(self, delivery_id: str, response: dict) -> None:
        self._execute("remember_delivery", {"delivery_id": delivery_id, "response": json.dumps(response)})

    # --- push -------------------------------------------------------------------------------

    def claim(self, company_id: int, *, lease_seconds: float, probe_seconds: float = 30.0) -> Claim:
        """Lease the lead for one push, unless another worker holds it or the pipeline is paused
        (while paused, the claim that finds the probe due leases the lead: it probes). Raises
        StoreUnavailable."""
        token = str(uuid.uuid4())
        params = {"company_id": company_id, "token": token, "lease_seconds": lease_seconds}
        row = self._execute("claim", {**params, "probe_seconds": probe_seconds}, fetch="one")
        common = {
            "throttled_for_seconds": _seconds(row["throttled_for"]),
            "paused_reason": row["paused_reason"],
            "probe_in_seconds": _seconds(row["probe_in"]),
        }
        if not row["known"]:
            return Claim(ClaimStatus.UNKNOWN, **common)
        if row["claimed"]:
            return Claim(ClaimStatus.CLAIMED, token=token, state=_lead_state(row), probing=row["probing"], **common)
        leased_for = _seconds(row["leased_for"])
        if row["paused_reason"] is not None and leased_for == 0:
            return Claim(ClaimStatus.PAUSED, **common)
        return Claim(ClaimStatus.LEASED, leased_for_seconds=leased_for, **common)

    def claim_due(self, company_id: int, token: str, *, limit: int, lease_seconds: float) -> list[LeadState]:
        """Lease up to `limit` other leads waiting to be written, under `token`, for one bulk write."""
        if limit < 1:
            return []
        rows = self._execute(
            "claim_due",
            {"company_id": company_id, "token": token, "limit": limit, "lease_seconds": lease_seconds},
            fetch="all",
        )
        return [_lead_state(row) for row in rows]

    def finish_synced(
        self,
        company_id: int,
        token: str,
        attempt: Attempt,
        *,
        version: datetime,
        etag: str | None,
        fingerprint: str | None,
        warnings: Sequence[str],
        synced: Synced | None = None,
    ) -> bool:
        """Record the claimed version as written (or left alone, as the CRM showed it) and let go.
        False when the lease was lost."""
        memory, crm = (synced.memory, synced.crm) if synced else (None, None)
        return self._audited(
            "finish_synced",
            company_id,
            token,
            attempt,
            version=version,
            etag=etag,
            fingerprint=fingerprint,
            warnings=json.dumps(list(warnings)),
            written_values=json.dumps(dict(memory.written), default=str) if memory else None,
            people_columns=sorted(memory.people) if memory else None,
            crm_state=crm.state if crm else None,
            crm_status_code=crm.status_code if crm else None,
            crm_owner_id=crm.owner_id if crm else None,
            crm_merged_into=crm.merged_into if crm else None,
        )

    def release(self, company_id: int, token: str, attempt: Attempt) -> bool:
        """Let go without a write (skipped, unchanged elsewhere, deferred). False when the lease was lost."""
        return self._audited("release", company_id, token, attempt)

    def finish_failure(
        self,
        company_id: int,
        token: str,
        attempt: Attempt,
        *,
        version: datetime,
        final: bool,
        unconfirmed_write: bool = False,
    ) -> bool:
        """Record a failed attempt at the claimed version and let go. False when the lease was lost.
        `unconfirmed_write`: a write may have landed unheard; a final transient failure then leaves
        the lead in `error` (swept and tried again) rather than `failed`."""
        return self._audited(
            "finish_failure",
            company_id,
            token,
            attempt,
            version=version,
            status="failed" if final else "error",
            transient=attempt.failure_class == "transient",
            unconfirmed=unconfirmed_write,
        )

    def _audited(self, change: str, company_id: int, token: str | None, attempt: Attempt, **params: Any) -> bool:
        row = self._run(
            _AUDITED[change],
            {"company_id": company_id, "token": token, **params, **_attempt_params(attempt)},
            fetch="one",
        )
        return row is not None

    def record_rejected_message(self, company_id: int, reason: str, *, dequeue_count: int | None) -> None:
        """A message for this lead that can never be processed: audited, and the lead marked failed."""
        attempt = Attempt(
            outcome="failed", failure_class="permanent", error=reason, duration_ms=0.0, dequeue_count=dequeue_count
        )
        self._execute("mark_rejected", {"company_id": company_id, "error": reason})
        self._run(_AUDIT_ONLY, {"company_id": company_id, **_attempt_params(attempt)})

    def publish_throttle(self, until: datetime, *, scope: str = "dataverse") -> None:
        """`dataverse`: every worker of every instance leaves Dataverse alone until `until`.
        `concurrency`: Dataverse refused a request for its concurrency limit at `until`."""
        self._execute("publish_throttle", {"until": until, "scope": scope})

    def throttle_marks(self) -> dict[str, datetime]:
        """The shared throttle's moments by scope (see `publish_throttle`)."""
        return {row["scope"]: row["throttled_until"] for row in self._execute("throttle_marks", fetch="all")}

    def reserve_lead_id(self, company_id: int, token: str, lead_id: str) -> bool:
        """Record `lead_id` as this company's Dataverse record before adopting it. False when another
        company holds it, or the lease was lost."""
        try:
            row = self._execute(
                "reserve_lead_id", {"company_id": company_id, "token": token, "d365_lead_id": lead_id}, fetch="one"
            )
        except StoreRefused:  # lead_sync_d365_lead_id: another company holds this record
            return False
        return row is not None

    # --- reading ----------------------------------------------------------------------------

    def lead_state(self, company_id: int) -> dict | None:
        return self._execute("lead_state", {"company_id": company_id}, fetch="one")

    # --- replay and sweep -------------------------------------------------------------------

    def reset_for_replay(self, company_id: int) -> None:
        self._execute("reset_for_replay", {"company_id": company_id})

    def claim_stuck(
        self, *, age_seconds: int, oldest_waiting: datetime | None = None, limit: int = 500
    ) -> list[LeadRef]:
        """Leads to send again: stale, unheld, and not possibly still waiting behind `oldest_waiting`
        (the insertion time of the oldest message in the queue)."""
        rows = self._execute(
            "claim_stuck", {"age_seconds": age_seconds, "oldest_waiting": oldest_waiting, "limit": limit}, fetch="all"
        )
        return [
            LeadRef(
                company_id=row["company_id"], version=row["queued_version"], correlation_id=row["correlation_id"] or ""
            )
            for row in rows
        ]

    def count_by_status(self) -> dict[str, int]:
        """Status -> number of leads in it (statuses with none are absent). Raises StoreUnavailable."""
        return {row["status"]: row["leads"] for row in self._execute("count_by_status", fetch="all")}


def _lead_state(row: dict[str, Any]) -> LeadState:
    return LeadState(
        lead=LeadMessage.from_data(row["message"]),
        queued_version=row["queued_version"],
        d365_lead_id=row["d365_lead_id"],
        d365_etag=row["d365_etag"],
        synced_version=row["synced_version"],
        synced_fingerprint=row["synced_fingerprint"],
        failed_version=row["failed_version"],
        attempts=row["attempts"],
        memory=ColumnMemory(row["written_values"] or {}, frozenset(row["people_columns"] or ())),
        crm_state=CrmState(row["crm_state"]) if row["crm_state"] else None,
        force_write=row["force_write"],
    )


def _seconds(interval: Any) -> float:
    return interval.total_seconds() if interval is not None else 0.0


def _attempt_params(attempt: Attempt) -> dict[str, Any]:
    return {
        "outcome": attempt.outcome,
        "failure_class": attempt.failure_class,
        "http_status": attempt.http_status,
        "error_code": attempt.error_code,
        "error": attempt.error,
        "duration_ms": round(attempt.duration_ms, 3),
        "d365_lead_id": attempt.d365_lead_id,
        "dataverse_requests": attempt.dataverse_requests,
        "correlation_id": attempt.correlation_id,
        "dequeue_count": attempt.dequeue_count,
        "service_request_id": attempt.service_request_id,
    }
