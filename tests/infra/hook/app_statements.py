"""Every statement the app sends to PostgreSQL, sent through the app's own store as a given role.

`exercise_store(url)` drives each public method of `LeadStore` once or more, in an order that makes each of
its statements do real work (a claim that claims, a guarded update that matches, an audit row written), and
returns the SQL text the store sent. `unissued(seen)` names the queries of queries.sql that were not among
it: a query added to the store without being exercised here fails the test that calls it.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime, timedelta

import psycopg2.extras

from shared.model.crm import CrmOutcome, CrmState
from shared.model.messages import LeadMessage
from shared.model.sync import Attempt, ClaimStatus
from shared.postgres.connect import PostgresConnector
from shared.postgres.queries import Q
from shared.postgres.store import LeadStore

# Run by the deployer's migrations, never by the app.
MIGRATION_QUERIES = {"lock_migrations", "create_migration_table", "applied_migrations", "record_migration"}
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
LEAD_ID = "5d0c7a41-0000-4000-8000-0000000000b1"


def unissued(seen: list[str]) -> list[str]:
    return sorted(name for name in Q if name not in MIGRATION_QUERIES and not any(Q[name] in text for text in seen))


def _recording_connect(url: str, seen: list[str]):
    class Recording(psycopg2.extras.RealDictCursor):
        def execute(self, query, vars=None):
            seen.append(query if isinstance(query, str) else query.decode())
            return super().execute(query, vars)

        def mogrify(self, query, vars=None):  # execute_batch mogrifies each row's statement
            seen.append(query if isinstance(query, str) else query.decode())
            return super().mogrify(query, vars)

    connector = PostgresConnector(url)

    def connect():
        connection = connector.connect()
        connection.cursor_factory = Recording
        return connection

    return connect


def _message(company_id: int, minutes: int) -> LeadMessage:
    version = T0 + timedelta(minutes=minutes)
    lead = {"company_id": company_id, "domain": f"c{company_id}.example", "updated_at": version.isoformat()}
    return LeadMessage(lead=lead, correlation_id=f"corr-{company_id}-{minutes}", received_at=version)


def _claimed(store: LeadStore, company_id: int):
    claim = store.claim(company_id, lease_seconds=60)
    assert claim.status is ClaimStatus.CLAIMED, claim
    return claim


def exercise_store(url: str) -> list[str]:
    """On a database of its own. Raises psycopg2.Error (InsufficientPrivilege when the role lacks a grant)."""
    seen: list[str] = []
    store = LeadStore(connect=_recording_connect(url, seen), pool_max=1)
    company, other = (10_000_000 + secrets.randbelow(10**9) for _ in range(2))
    try:
        store.ping()
        delivery = f"delivery-{secrets.token_hex(4)}"
        assert store.claim_delivery(delivery, {"status": "pending"}) is None
        store.remember_delivery(delivery, {"status": "accepted"})
        assert store.claim_delivery(delivery, {"status": "pending"}) == {"status": "accepted"}
        store.record_queued([_message(company, 0), _message(other, 0)])

        held = _claimed(store, company)
        assert [state.lead.company_id for state in store.claim_due(company, held.token, limit=5, lease_seconds=60)]
        assert store.reserve_lead_id(company, held.token, LEAD_ID)
        assert store.finish_synced(
            company, held.token, Attempt(outcome="created", duration_ms=1.0, d365_lead_id=LEAD_ID),
            version=T0, etag='W/"1"', fingerprint="f1", warnings=[],
        )
        store.record_queued([_message(company, 1)])
        held = _claimed(store, company)
        assert store.release(company, held.token, Attempt(outcome="deferred", duration_ms=1.0))
        held = _claimed(store, company)
        failure = Attempt(outcome="failed", duration_ms=1.0, failure_class="permanent", error="HTTP 400: bad")
        assert store.finish_failure(company, held.token, failure, version=T0 + timedelta(minutes=1), final=True)
        store.record_rejected_message(company, "malformed message: test", dequeue_count=1)

        store.publish_throttle(datetime.now(UTC) - timedelta(seconds=1))
        assert "dataverse" in store.throttle_marks()
        assert store.open_pause("privilege", "test: a privilege was removed", probe_seconds=60)
        assert store.pause() is not None
        store.probe_again()
        assert store.close_pause() == "privilege"

        reader = str(uuid.uuid4())
        assert store.lease_outcome_reader(reader, lease_seconds=60)[0]  # the database is this test's own
        assert store.advance_outcome_reader(reader, datetime.now(UTC))
        store.release_outcome_reader(reader)
        store.record_crm_outcome(LEAD_ID, CrmOutcome(CrmState.QUALIFIED, status_code=3))
        assert store.count_by_crm_state() == {"qualified": 1}
        assert store.lead_state(company)["status"] == "failed"
        store.reset_for_replay(company)
        store.claim_stuck(age_seconds=0)
        assert store.count_by_status()
    finally:
        store.close()
    return seen
