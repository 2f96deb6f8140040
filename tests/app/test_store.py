"""Migrations, settings and the sweeper against a real PostgreSQL."""
from __future__ import annotations

import secrets
import threading
from datetime import UTC, datetime, timezone

import psycopg2
import pytest

from local import services
from shared.model.messages import LeadMessage, LeadRef
from shared.runtime.settings import Settings, SettingsError
from shared.postgres.store import LeadStore
from shared.postgres.queries import MIGRATIONS_DIR
from shared.usecases.sweep import requeue_stuck_leads
from tests.app.helpers import lead


@pytest.fixture
def empty_database(postgres_server):
    name = f"leadpush_mig_{secrets.token_hex(4)}"
    url = services.create_database(postgres_server.url, name)
    yield url
    services.drop_database(postgres_server.url, name)


def test_migrations_apply_once_when_workers_start_together(empty_database):
    stores = [LeadStore(empty_database, pool_max=2) for _ in range(4)]
    applied: list[list[str]] = []
    threads = [threading.Thread(target=lambda s=s: applied.append(s.migrate())) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    every = sorted(path.stem for path in MIGRATIONS_DIR.glob("[0-9][0-9][0-9]_*.sql"))
    assert len(every) >= 4
    assert sorted(len(a) for a in applied) == [0, 0, 0, len(every)]
    with psycopg2.connect(empty_database) as conn, conn.cursor() as cur:
        cur.execute("SELECT version FROM schema_migration ORDER BY version")
        assert [r[0] for r in cur.fetchall()] == every
    for s in stores:
        s.close()


def test_a_synced_row_without_a_dataverse_id_is_refused_by_the_schema(empty_database):
    store = LeadStore(empty_database, pool_max=1)
    store.migrate()
    store.close()
    with psycopg2.connect(empty_database) as conn, conn.cursor() as cur, pytest.raises(psycopg2.errors.CheckViolation):
        cur.execute("INSERT INTO lead_sync (company_id, status, message, queued_version) "
                    "VALUES (1, 'synced', '{}', now())")


def test_missing_settings_are_named_together():
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"D365_AUTH_MODE": "client_secret", "D365_TIMEOUT_SECONDS": "soon"})

    text = str(raised.value)
    for name in ("AzureWebJobsStorage", "DATABASE_URL", "D365_URL", "D365_TENANT_ID", "D365_CLIENT_ID",
                 "D365_CLIENT_SECRET", "D365_TIMEOUT_SECONDS", "HUNTER_WEBHOOK_SECRET"):
        assert name in text


def test_sweeper_requeues_leads_stuck_in_queued(empty_database, azurite):
    from shared.storage.queue import LeadQueues

    store = LeadStore(empty_database, pool_max=2)
    store.migrate()
    queues = LeadQueues(azurite.connection_string, f"sweep-{secrets.token_hex(4)}")
    message = LeadMessage(lead=lead(7001), correlation_id="c", received_at=datetime.now(timezone.utc))
    store.record_queued([message])  # recorded, but its queue message was lost

    assert requeue_stuck_leads(store=store, queues=queues, age_seconds=3600) == 0
    assert requeue_stuck_leads(store=store, queues=queues, age_seconds=0) == 1

    texts = [m.content for m in queues.main.peek_messages(max_messages=5)]
    assert [LeadRef.from_wire(t.encode()).company_id for t in texts] == [7001]
    store.close()


def test_sweeper_leaves_alone_a_lead_whose_message_may_still_wait_in_the_queue(empty_database, azurite):
    from shared.storage.queue import LeadQueues

    store = LeadStore(empty_database, pool_max=2)
    store.migrate()
    queues = LeadQueues(azurite.connection_string, f"sweep-{secrets.token_hex(4)}")
    queues.send(["backlog"])  # the front of a long queue, sent before the lead
    store.record_queued([LeadMessage(lead=lead(7002), correlation_id="c", received_at=datetime.now(timezone.utc))])

    assert requeue_stuck_leads(store=store, queues=queues, age_seconds=0) == 0

    queues.main.clear_messages()
    assert requeue_stuck_leads(store=store, queues=queues, age_seconds=0) == 1
    store.close()


def test_a_statement_waiting_on_a_lock_gives_up_instead_of_hanging(database_url):
    """A push must never outlive its function's timeout waiting for PostgreSQL: a lock held elsewhere
    (a stuck transaction, a migration) makes the statement fail, as the database being unavailable."""
    from shared.model.errors import StoreUnavailable

    company = 8_700_000 + secrets.randbelow(100_000)
    store = LeadStore(database_url, pool_max=1)
    store.record_queued([LeadMessage(lead=lead(company), correlation_id="c", received_at=datetime.now(UTC))])
    holder = psycopg2.connect(database_url)
    release = threading.Timer(60, holder.rollback)  # without a bound, the claim would get the lead then
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM lead_sync WHERE company_id = %s FOR UPDATE", (company,))
        release.start()
        with pytest.raises(StoreUnavailable):
            store.claim(company, lease_seconds=60)
    finally:
        release.cancel()
        holder.rollback()
        holder.close()
        store.close()
    assert LeadStore(database_url, pool_max=1).claim(company, lease_seconds=60).token
