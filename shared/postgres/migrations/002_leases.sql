-- Lead ownership by lease instead of session advisory locks (which PgBouncer's transaction pooling
-- cannot keep), optimistic concurrency against Dataverse, and a shared "throttled until".
ALTER TABLE lead_sync
    -- the worker pushing the lead, until when; a crashed worker's lease simply runs out
    ADD COLUMN lease_token      uuid,
    ADD COLUMN lease_until      timestamptz,
    -- the row version Dataverse gave our last write: the next update sends it as If-Match
    ADD COLUMN d365_etag        text,
    -- the version whose final failure the row shows; older or equal deliveries leave it shown
    ADD COLUMN failed_version   timestamptz,
    -- when the lead's newest queue message was sent: the sweeper leaves alone leads whose message
    -- may still be waiting in the queue
    ADD COLUMN enqueued_at      timestamptz,
    -- a write of the queued version may have landed without our hearing of it (its answer was
    -- lost): running out of deliveries then leaves the lead in error, for the sweeper, not failed
    ADD COLUMN write_unconfirmed boolean NOT NULL DEFAULT false,
    -- a lease is a token and an end, or neither
    ADD CONSTRAINT lead_sync_lease CHECK ((lease_token IS NULL) = (lease_until IS NULL));

-- the sweeper also picks up leads left in error whose message was lost
DROP INDEX lead_sync_pending;
CREATE INDEX lead_sync_pending ON lead_sync (updated_at) WHERE status IN ('queued', 'processing', 'error');

-- the id Microsoft support asks for, of the Dataverse response that failed
ALTER TABLE sync_attempt ADD COLUMN service_request_id text;

-- After a 429, every worker of every instance waits until this time before calling Dataverse again.
CREATE TABLE dataverse_throttle (
    scope            text PRIMARY KEY,
    throttled_until  timestamptz NOT NULL
);

-- One Dataverse record per company and one company per record: two companies can never end up
-- writing the same lead, even when both find it in one lookup at the same moment.
CREATE UNIQUE INDEX lead_sync_d365_lead_id ON lead_sync (d365_lead_id);
