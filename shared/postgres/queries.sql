-- Every statement the app runs, by name. Loaded by shared/postgres/store.py; parameters are %(name)s.

-- name: record_queued
-- A newer version replaces the stored lead and is queued; an older or equal one changes nothing.
-- A lead a worker holds keeps its status: the worker re-decides it when it lets go.
INSERT INTO lead_sync (company_id, status, message, queued_version, correlation_id, enqueued_at)
VALUES (%(company_id)s, 'queued', %(message)s, %(version)s, %(correlation_id)s, now())
ON CONFLICT (company_id) DO UPDATE SET
    status = CASE WHEN lead_sync.lease_until > now() THEN lead_sync.status
                  WHEN EXCLUDED.queued_version > lead_sync.queued_version THEN 'queued'
                  ELSE lead_sync.status END,
    message = CASE WHEN EXCLUDED.queued_version > lead_sync.queued_version
                   THEN EXCLUDED.message ELSE lead_sync.message END,
    correlation_id = CASE WHEN EXCLUDED.queued_version > lead_sync.queued_version
                          THEN EXCLUDED.correlation_id ELSE lead_sync.correlation_id END,
    attempts = CASE WHEN EXCLUDED.queued_version > lead_sync.queued_version
                    THEN 0 ELSE lead_sync.attempts END,
    write_unconfirmed = lead_sync.write_unconfirmed AND EXCLUDED.queued_version <= lead_sync.queued_version,
    queued_version = GREATEST(lead_sync.queued_version, EXCLUDED.queued_version),
    enqueued_at = now(),
    updated_at = now();

-- name: claim
-- Takes the lead for one push unless another worker's lease is still running, or the pipeline is
-- paused. While paused, the one claim that finds the probe due takes it (moving the next probe on)
-- and the lead with it: that push is the probe. `current` is the row before this statement: it
-- tells a lead that does not exist from one that is leased.
WITH current AS (
    SELECT lease_until FROM lead_sync WHERE company_id = %(company_id)s
), pause AS (
    SELECT reason, probe_at FROM pipeline_pause WHERE scope = 'dataverse'
), probe AS (
    UPDATE pipeline_pause SET probe_at = now() + make_interval(secs => %(probe_seconds)s)
    WHERE scope = 'dataverse' AND probe_at <= now()
      AND EXISTS (SELECT 1 FROM current WHERE lease_until IS NULL OR lease_until <= now())
    RETURNING probe_at
), claimed AS (
    UPDATE lead_sync SET
        -- a lead with nothing left to write keeps showing synced (or failed) while it is checked
        status = CASE WHEN synced_version >= queued_version OR failed_version >= queued_version THEN status
                      ELSE 'processing' END,
        lease_token = %(token)s,
        lease_until = now() + make_interval(secs => %(lease_seconds)s),
        last_attempt_at = now(),
        updated_at = now()
    WHERE company_id = %(company_id)s AND (lease_until IS NULL OR lease_until <= now())
      AND (NOT EXISTS (SELECT 1 FROM pause) OR EXISTS (SELECT 1 FROM probe))
    RETURNING message, queued_version, d365_lead_id, d365_etag, synced_version, synced_fingerprint,
              failed_version, attempts, written_values, people_columns, crm_state, force_write
)
SELECT EXISTS (SELECT 1 FROM current) AS known,
       EXISTS (SELECT 1 FROM claimed) AS claimed,
       GREATEST((SELECT lease_until FROM current), now()) - now() AS leased_for,
       GREATEST((SELECT throttled_until FROM dataverse_throttle WHERE scope = 'dataverse'), now())
           - now() AS throttled_for,
       (SELECT reason FROM pause) AS paused_reason,
       EXISTS (SELECT 1 FROM probe) AS probing,
       GREATEST(COALESCE((SELECT probe_at FROM probe), (SELECT probe_at FROM pause)), now()) - now() AS probe_in,
       claimed.message, claimed.queued_version, claimed.d365_lead_id::text AS d365_lead_id, claimed.d365_etag,
       claimed.synced_version, claimed.synced_fingerprint, claimed.failed_version, claimed.attempts,
       claimed.written_values, claimed.people_columns, claimed.crm_state, claimed.force_write
FROM (SELECT 1) one LEFT JOIN claimed ON true;

-- name: claim_due
-- Other leads waiting to be written that nobody holds, leased with the caller's token for one bulk
-- write. Leads whose newest version is synced or failed finally are not due. Newest first: the
-- oldest ones' own messages are at the front of the queue, about to start batches of their own.
WITH due AS (
    SELECT company_id FROM lead_sync
    WHERE status IN ('queued', 'error') AND company_id <> %(company_id)s
      AND (lease_until IS NULL OR lease_until <= now())
      AND (synced_version IS NULL OR queued_version > synced_version)
      AND (failed_version IS NULL OR queued_version > failed_version)
    ORDER BY updated_at DESC
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
)
UPDATE lead_sync SET
    status = 'processing',
    lease_token = %(token)s,
    lease_until = now() + make_interval(secs => %(lease_seconds)s),
    last_attempt_at = now(),
    updated_at = now()
FROM due WHERE lead_sync.company_id = due.company_id
RETURNING lead_sync.company_id, message, queued_version, d365_lead_id::text AS d365_lead_id, d365_etag,
          synced_version, synced_fingerprint, failed_version, attempts, written_values, people_columns,
          crm_state, force_write;

-- name: finish_synced
-- The claimed version is written. Synced only if it is still the newest: a newer one that came in
-- meanwhile leaves the lead queued for its own delivery.
UPDATE lead_sync SET
    status = CASE WHEN %(version)s >= queued_version THEN 'synced' ELSE 'queued' END,
    d365_lead_id = %(d365_lead_id)s,
    d365_etag = %(etag)s,
    synced_version = GREATEST(synced_version, %(version)s),
    synced_fingerprint = %(fingerprint)s,
    failed_version = NULL,
    write_unconfirmed = false,
    attempts = attempts + 1,
    last_error = NULL,
    warnings = %(warnings)s,
    last_success_at = now(),
    written_values = COALESCE(%(written_values)s::jsonb, written_values),
    people_columns = COALESCE(%(people_columns)s::text[], people_columns),
    crm_state = COALESCE(%(crm_state)s, crm_state),
    crm_status_code = CASE WHEN %(crm_state)s::text IS NULL THEN crm_status_code ELSE %(crm_status_code)s END,
    crm_owner_id = CASE WHEN %(crm_state)s::text IS NULL THEN crm_owner_id ELSE %(crm_owner_id)s::uuid END,
    crm_merged_into = CASE WHEN %(crm_state)s::text IS NULL THEN crm_merged_into ELSE %(crm_merged_into)s::uuid END,
    crm_seen_at = CASE WHEN %(crm_state)s::text IS NULL THEN crm_seen_at ELSE now() END,
    force_write = false,
    lease_token = NULL,
    lease_until = NULL,
    updated_at = now()
WHERE company_id = %(company_id)s AND lease_token = %(token)s
RETURNING company_id

-- name: release
-- Nothing was written: the lead goes back to what its versions say (a final failure of its newest
-- version stays shown, with its reason).
UPDATE lead_sync SET
    status = CASE WHEN failed_version >= queued_version THEN 'failed'
                  WHEN synced_version >= queued_version THEN 'synced'
                  ELSE 'queued' END,
    last_error = CASE WHEN %(error)s::text IS NOT NULL THEN %(error)s ELSE last_error END,
    lease_token = NULL,
    lease_until = NULL,
    updated_at = now()
WHERE company_id = %(company_id)s AND lease_token = %(token)s
RETURNING company_id

-- name: finish_failure
-- `failed` marks the claimed version as finally failed; if a newer one came in meanwhile the lead
-- is queued for it instead. A transient failure after a write whose outcome we never heard stays
-- `error` (swept and tried again): the record may well hold this version.
UPDATE lead_sync SET
    write_unconfirmed = write_unconfirmed OR %(unconfirmed)s,
    status = CASE WHEN queued_version > %(version)s THEN 'queued'
                  WHEN %(status)s = 'failed' AND %(transient)s AND (write_unconfirmed OR %(unconfirmed)s)
                      THEN 'error'
                  ELSE %(status)s END,
    failed_version = CASE WHEN %(status)s = 'failed'
                               AND NOT (%(transient)s AND (write_unconfirmed OR %(unconfirmed)s))
                          THEN %(version)s ELSE failed_version END,
    attempts = attempts + 1,
    last_error = %(error)s,
    lease_token = NULL,
    lease_until = NULL,
    updated_at = now()
WHERE company_id = %(company_id)s AND lease_token = %(token)s
RETURNING company_id

-- name: mark_rejected
-- A message for this lead that can never be processed (a lead the store does not know stays unknown).
UPDATE lead_sync SET
    status = CASE WHEN lease_until > now() THEN status ELSE 'failed' END,
    failed_version = queued_version,
    attempts = attempts + 1,
    last_error = %(error)s,
    updated_at = now()
WHERE company_id = %(company_id)s
RETURNING company_id

-- name: insert_attempt
-- Follows a guarded state change as `WITH changed AS (<change>) <insert_attempt>`: the attempt is
-- audited only when the change happened, and the statement returns a row only then.
INSERT INTO sync_attempt (
    company_id, outcome, failure_class, http_status, error_code, error, duration_ms,
    d365_lead_id, dataverse_requests, correlation_id, dequeue_count, service_request_id)
SELECT
    changed.company_id, %(outcome)s, %(failure_class)s, %(http_status)s, %(error_code)s, %(error)s,
    %(duration_ms)s, %(d365_lead_id)s, %(dataverse_requests)s, %(correlation_id)s, %(dequeue_count)s,
    %(service_request_id)s
FROM changed
RETURNING company_id;

-- name: publish_throttle
-- scope 'dataverse': until when every worker leaves Dataverse alone (a 429's Retry-After);
-- scope 'concurrency': when Dataverse last refused a request for the concurrency limit.
INSERT INTO dataverse_throttle (scope, throttled_until) VALUES (%(scope)s, %(until)s)
ON CONFLICT (scope) DO UPDATE SET
    throttled_until = GREATEST(dataverse_throttle.throttled_until, EXCLUDED.throttled_until);

-- name: throttle_marks
SELECT scope, throttled_until FROM dataverse_throttle;

-- name: open_pause
-- Opens the pause, or keeps it open with the newest reason; the next probe after `probe_seconds`.
INSERT INTO pipeline_pause (scope, reason, detail, probe_at)
VALUES ('dataverse', %(reason)s, %(detail)s, now() + make_interval(secs => %(probe_seconds)s))
ON CONFLICT (scope) DO UPDATE SET reason = EXCLUDED.reason, detail = EXCLUDED.detail, probe_at = EXCLUDED.probe_at
RETURNING (xmax = 0) AS opened;

-- name: close_pause
DELETE FROM pipeline_pause WHERE scope = 'dataverse' RETURNING reason;

-- name: probe_again
-- The probe proved nothing (its lead needed no request): the next claim may probe at once.
UPDATE pipeline_pause SET probe_at = now() WHERE scope = 'dataverse';

-- name: pause
SELECT reason, detail, opened_at FROM pipeline_pause WHERE scope = 'dataverse';

-- name: reserve_lead_id
-- Before adopting a record found by lookup: the unique index on d365_lead_id refuses it if another
-- company holds it.
UPDATE lead_sync SET d365_lead_id = %(d365_lead_id)s, d365_etag = NULL, updated_at = now()
WHERE company_id = %(company_id)s AND lease_token = %(token)s
RETURNING company_id;

-- name: lead_state
SELECT company_id, status, d365_lead_id::text AS d365_lead_id, attempts, last_error, warnings,
       correlation_id, created_at, updated_at, last_attempt_at, last_success_at,
       crm_state, crm_status_code, crm_owner_id::text AS crm_owner_id, crm_merged_into::text AS crm_merged_into,
       crm_seen_at
FROM lead_sync WHERE company_id = %(company_id)s;

-- name: reset_for_replay
-- A replayed lead starts over: queued, attempts counted afresh, its last failure no longer final, and
-- its next push forced through what it would leave alone (a lead deleted or closed in the CRM),
-- written even if its payload did not change.
UPDATE lead_sync SET status = 'queued', attempts = 0, failed_version = NULL, enqueued_at = now(),
                     synced_version = NULL, synced_fingerprint = NULL, force_write = true, updated_at = now()
WHERE company_id = %(company_id)s;

-- name: claim_stuck
-- Leads left queued, processing or in error too long (a lost or expired message), nobody holding
-- them, whose message was sent before the oldest one still waiting in the queue: touched so that
-- two sweeps do not both re-enqueue them, and returned with their newest version.
UPDATE lead_sync SET
    status = CASE WHEN status = 'processing' THEN 'queued' ELSE status END,
    enqueued_at = now(),
    updated_at = now()
WHERE company_id IN (
    SELECT company_id FROM lead_sync
    WHERE status IN ('queued', 'processing', 'error')
      AND updated_at < now() - make_interval(secs => %(age_seconds)s)
      AND (lease_until IS NULL OR lease_until < now())
      AND (%(oldest_waiting)s::timestamptz IS NULL OR enqueued_at IS NULL
           OR enqueued_at < %(oldest_waiting)s::timestamptz)
    ORDER BY updated_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED)
RETURNING company_id, queued_version, correlation_id;

-- name: claim_delivery
-- The first call with a delivery id claims it, before anything is queued (its answer is filled in
-- once the leads are); a later call gets what is stored, so two calls racing with one id and
-- different bodies cannot both queue.
INSERT INTO webhook_delivery (delivery_id, response) VALUES (%(delivery_id)s, %(response)s)
ON CONFLICT (delivery_id) DO NOTHING
RETURNING delivery_id;

-- name: delivery_response
SELECT response FROM webhook_delivery WHERE delivery_id = %(delivery_id)s;

-- name: remember_delivery
UPDATE webhook_delivery SET response = %(response)s WHERE delivery_id = %(delivery_id)s;

-- name: lock_migrations
-- Transaction-scoped: released by the migration's own COMMIT or ROLLBACK, so it works through
-- PgBouncer's transaction pooling and can never leak.
SELECT pg_advisory_xact_lock(%(key)s);

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

-- name: lease_outcome_reader
-- One instance at a time reads the CRM's changed leads; returns where the last read stopped.
UPDATE crm_outcome_reader SET lease_token = %(token)s,
                              lease_until = now() + make_interval(secs => %(lease_seconds)s)
WHERE scope = 'lead' AND (lease_until IS NULL OR lease_until <= now())
RETURNING modified_since;

-- name: advance_outcome_reader
-- After a page is stored: the next read starts at its last row's modifiedon (`ge`: that row again).
UPDATE crm_outcome_reader SET modified_since = GREATEST(modified_since, %(since)s)
WHERE scope = 'lead' AND lease_token = %(token)s
RETURNING modified_since;

-- name: release_outcome_reader
UPDATE crm_outcome_reader SET lease_token = NULL, lease_until = NULL
WHERE scope = 'lead' AND lease_token = %(token)s;

-- name: record_crm_outcome
-- One changed record as the CRM shows it, on the lead that holds it. A record merged into another is
-- followed when no other lead holds the master (the next write goes there), else left as merged.
-- Returns the lead, and whether it was closed and is open again (its newest version is then due).
WITH target AS (
    SELECT company_id, crm_state AS before FROM lead_sync WHERE d365_lead_id = %(d365_lead_id)s::uuid
), master_free AS (
    SELECT %(merged_into)s::uuid IS NOT NULL
           AND NOT EXISTS (SELECT 1 FROM lead_sync WHERE d365_lead_id = %(merged_into)s::uuid) AS free
)
UPDATE lead_sync SET
    d365_lead_id = CASE WHEN (SELECT free FROM master_free) THEN %(merged_into)s::uuid ELSE d365_lead_id END,
    d365_etag = CASE WHEN (SELECT free FROM master_free) THEN NULL ELSE d365_etag END,
    crm_state = CASE WHEN %(merged_into)s::uuid IS NULL THEN %(state)s
                     WHEN (SELECT free FROM master_free) THEN crm_state ELSE 'merged' END,
    crm_status_code = %(status_code)s,
    crm_owner_id = %(owner_id)s::uuid,
    crm_merged_into = CASE WHEN %(merged_into)s::uuid IS NULL OR (SELECT free FROM master_free) THEN NULL
                           ELSE %(merged_into)s::uuid END,
    crm_seen_at = now(),
    -- reopened in the CRM: its newest version is written again
    status = CASE WHEN crm_state IN ('qualified', 'disqualified') AND %(state)s = 'open' THEN 'queued' ELSE status END,
    synced_version = CASE WHEN crm_state IN ('qualified', 'disqualified') AND %(state)s = 'open'
                          THEN NULL ELSE synced_version END,
    enqueued_at = CASE WHEN crm_state IN ('qualified', 'disqualified') AND %(state)s = 'open'
                       THEN now() ELSE enqueued_at END,
    updated_at = now()
FROM target WHERE lead_sync.company_id = target.company_id
RETURNING lead_sync.company_id, lead_sync.queued_version, lead_sync.correlation_id,
          target.before IN ('qualified', 'disqualified') AND %(state)s = 'open' AS reopened;

-- name: count_by_crm_state
SELECT crm_state, count(*) AS leads FROM lead_sync WHERE crm_state IS NOT NULL GROUP BY crm_state;
