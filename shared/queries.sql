-- Every statement the app runs, by name. Loaded by shared/store.py; parameters are %(name)s.

-- name: record_queued
-- A newer version replaces the stored message; an older one only marks the lead queued again.
INSERT INTO lead_sync (company_id, status, message, queued_version, correlation_id)
VALUES (%(company_id)s, 'queued', %(message)s, %(version)s, %(correlation_id)s)
ON CONFLICT (company_id) DO UPDATE SET
    status = 'queued',
    message = CASE WHEN EXCLUDED.queued_version >= lead_sync.queued_version
                   THEN EXCLUDED.message ELSE lead_sync.message END,
    queued_version = GREATEST(lead_sync.queued_version, EXCLUDED.queued_version),
    correlation_id = EXCLUDED.correlation_id,
    attempts = CASE WHEN EXCLUDED.queued_version > lead_sync.queued_version
                    THEN 0 ELSE lead_sync.attempts END,
    updated_at = now();

-- name: claim
-- Also creates the row for a message that did not come through our webhook (a replay, a re-send),
-- and keeps the newest version seen, as record_queued does.
INSERT INTO lead_sync (company_id, status, message, queued_version, correlation_id, last_attempt_at)
VALUES (%(company_id)s, 'processing', %(message)s, %(version)s, %(correlation_id)s, now())
ON CONFLICT (company_id) DO UPDATE SET
    status = 'processing',
    message = CASE WHEN EXCLUDED.queued_version > lead_sync.queued_version
                   THEN EXCLUDED.message ELSE lead_sync.message END,
    queued_version = GREATEST(lead_sync.queued_version, EXCLUDED.queued_version),
    last_attempt_at = now(),
    updated_at = now()
RETURNING d365_lead_id, synced_version, synced_fingerprint, attempts;

-- name: mark_synced
-- Synced only once the newest version accepted is written; an older one written while a newer
-- one waits for its retry leaves the lead queued.
UPDATE lead_sync SET
    status = CASE WHEN GREATEST(synced_version, %(version)s) >= queued_version THEN 'synced' ELSE 'queued' END,
    d365_lead_id = %(d365_lead_id)s,
    synced_version = GREATEST(synced_version, %(version)s),
    synced_fingerprint = %(fingerprint)s,
    attempts = attempts + 1,
    last_error = NULL,
    warnings = %(warnings)s,
    last_success_at = now(),
    updated_at = now()
WHERE company_id = %(company_id)s;

-- name: mark_skipped
-- Nothing was written: the lead stays as it was last synced (queued if a newer version waits).
UPDATE lead_sync SET
    status = CASE WHEN synced_version >= queued_version THEN 'synced' ELSE 'queued' END,
    last_error = NULL,
    updated_at = now()
WHERE company_id = %(company_id)s AND d365_lead_id IS NOT NULL;

-- name: mark_deferred
-- Throttled: the message was re-enqueued with a delay; this is not a failed attempt.
UPDATE lead_sync SET
    status = 'queued',
    last_error = %(error)s,
    updated_at = now()
WHERE company_id = %(company_id)s;

-- name: mark_failure
UPDATE lead_sync SET
    status = %(status)s,
    attempts = attempts + 1,
    last_error = %(error)s,
    updated_at = now()
WHERE company_id = %(company_id)s;

-- name: insert_attempt
INSERT INTO sync_attempt (
    company_id, outcome, failure_class, http_status, error_code, error, duration_ms,
    d365_lead_id, dataverse_requests, correlation_id, dequeue_count)
VALUES (
    %(company_id)s, %(outcome)s, %(failure_class)s, %(http_status)s, %(error_code)s, %(error)s,
    %(duration_ms)s, %(d365_lead_id)s, %(dataverse_requests)s, %(correlation_id)s, %(dequeue_count)s);

-- name: lock_lead
-- Session-level: held after the claim's commit, until unlock_all.
SELECT pg_advisory_lock(%(company_id)s);

-- name: unlock_all
SELECT pg_advisory_unlock_all();

-- name: lead_state
SELECT company_id, status, d365_lead_id::text AS d365_lead_id, attempts, last_error, warnings,
       correlation_id, created_at, updated_at, last_attempt_at, last_success_at
FROM lead_sync WHERE company_id = %(company_id)s;

-- name: reset_for_replay
-- A replayed lead starts over: queued, attempts counted afresh.
UPDATE lead_sync SET status = 'queued', attempts = 0, updated_at = now()
WHERE company_id = %(company_id)s;

-- name: claim_stuck
-- Leads left queued or processing too long (a lost or expired message): touched so that two
-- sweeps do not both re-enqueue them, and returned with their newest message.
UPDATE lead_sync SET status = 'queued', updated_at = now()
WHERE company_id IN (
    SELECT company_id FROM lead_sync
    WHERE status IN ('queued', 'processing') AND updated_at < now() - make_interval(secs => %(age_seconds)s)
    ORDER BY updated_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING company_id, message;

-- name: delivery_response
SELECT response FROM webhook_delivery WHERE delivery_id = %(delivery_id)s;

-- name: remember_delivery
INSERT INTO webhook_delivery (delivery_id, response) VALUES (%(delivery_id)s, %(response)s)
ON CONFLICT (delivery_id) DO NOTHING;

-- name: lock_migrations
SELECT pg_advisory_lock(%(key)s);

-- name: unlock_migrations
SELECT pg_advisory_unlock(%(key)s);

-- name: create_migration_table
CREATE TABLE IF NOT EXISTS schema_migration (
    version     text PRIMARY KEY,
    applied_at  timestamptz NOT NULL DEFAULT now()
);

-- name: applied_migrations
SELECT version FROM schema_migration;

-- name: record_migration
INSERT INTO schema_migration (version) VALUES (%(version)s);

-- name: ping
SELECT 1;

-- name: count_by_status
-- For the leadpush.leads.by_status gauge, read every minute by the metrics timer.
SELECT status, count(*) AS leads FROM lead_sync GROUP BY status;
