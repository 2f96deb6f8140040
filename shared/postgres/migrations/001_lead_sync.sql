-- One row per Hunter company: where its lead stands in Dataverse.
CREATE TABLE lead_sync (
    company_id          bigint PRIMARY KEY,
    status              text NOT NULL,
    -- the newest lead accepted at the webhook, as queued; what the sweeper re-enqueues
    message             jsonb NOT NULL,
    queued_version      timestamptz NOT NULL,
    d365_lead_id        uuid,
    -- version and payload hash of the data last written to Dataverse: newest wins, unchanged costs nothing
    synced_version      timestamptz,
    synced_fingerprint  text,
    attempts            integer NOT NULL DEFAULT 0,
    last_error          text,
    warnings            jsonb NOT NULL DEFAULT '[]'::jsonb,
    correlation_id      text,
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    last_attempt_at     timestamptz,
    last_success_at     timestamptz,
    -- a status outside this set would be invisible to the sweeper and the API
    CONSTRAINT lead_sync_status CHECK (status IN ('queued', 'processing', 'synced', 'error', 'failed')),
    -- a synced lead always knows its Dataverse record
    CONSTRAINT lead_sync_synced_has_id CHECK (status <> 'synced' OR d365_lead_id IS NOT NULL),
    -- a failed or errored lead always says why
    CONSTRAINT lead_sync_error_has_reason CHECK (status NOT IN ('error', 'failed') OR last_error IS NOT NULL),
    CONSTRAINT lead_sync_attempts CHECK (attempts >= 0)
);

-- the sweeper's query: leads left queued or processing for too long
CREATE INDEX lead_sync_pending ON lead_sync (updated_at) WHERE status IN ('queued', 'processing');

-- Append-only audit: every try at a lead, whatever came of it.
CREATE TABLE sync_attempt (
    id              bigserial PRIMARY KEY,
    company_id      bigint NOT NULL,
    attempted_at    timestamptz NOT NULL DEFAULT now(),
    outcome         text NOT NULL,
    failure_class   text,
    http_status     integer,
    error_code      text,
    error           text,
    duration_ms     double precision NOT NULL,
    d365_lead_id    uuid,
    dataverse_requests integer NOT NULL DEFAULT 0,
    correlation_id  text,
    dequeue_count   integer,
    CONSTRAINT sync_attempt_outcome CHECK (
        outcome IN ('created', 'updated', 'unchanged', 'skipped', 'deferred', 'error', 'failed')),
    -- only failures carry a class, and every failure has one
    CONSTRAINT sync_attempt_class CHECK (
        (outcome IN ('error', 'failed')) = (failure_class IS NOT NULL)
        AND (failure_class IS NULL OR failure_class IN ('transient', 'permanent')))
);

CREATE INDEX sync_attempt_company ON sync_attempt (company_id, attempted_at);

-- Webhook deliveries already answered, so a re-delivered call is a no-op with the same answer.
CREATE TABLE webhook_delivery (
    delivery_id     text PRIMARY KEY,
    received_at     timestamptz NOT NULL DEFAULT now(),
    response        jsonb NOT NULL
);
