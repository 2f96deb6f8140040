-- An org-level failure of Dataverse (credentials refused, a privilege removed, the org in
-- administration mode) pauses the push for every instance: leads wait, none is marked failed.
-- At most one row: the pause, if any.
CREATE TABLE pipeline_pause (
    scope      text PRIMARY KEY DEFAULT 'dataverse' CHECK (scope = 'dataverse'),
    reason     text NOT NULL,
    detail     text NOT NULL,
    opened_at  timestamptz NOT NULL DEFAULT now(),
    -- the next probe may start then; one claim takes it (moving it on), so one probe runs at a time
    probe_at   timestamptz NOT NULL
);

-- a delivery that met an org-level failure lets its lead go as `paused`: not a failure, no class
ALTER TABLE sync_attempt DROP CONSTRAINT sync_attempt_outcome;
ALTER TABLE sync_attempt ADD CONSTRAINT sync_attempt_outcome CHECK (
    outcome IN ('created', 'updated', 'unchanged', 'skipped', 'deferred', 'paused', 'error', 'failed'));
