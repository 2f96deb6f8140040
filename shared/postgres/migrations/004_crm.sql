-- The CRM is alive: people edit, qualify, disqualify, delete and merge the leads we write.
ALTER TABLE lead_sync
    -- the values our last write sent, by column: a column whose CRM value differs was changed by a person
    ADD COLUMN written_values   jsonb,
    -- mapped columns people changed: theirs from then on (unless Hunter owns them)
    ADD COLUMN people_columns   text[] NOT NULL DEFAULT '{}',
    -- what became of the lead in the CRM, as last seen (a write's answer, or the outcome reader)
    ADD COLUMN crm_state        text,
    ADD COLUMN crm_status_code  integer,
    ADD COLUMN crm_owner_id     uuid,
    ADD COLUMN crm_merged_into  uuid,
    ADD COLUMN crm_seen_at      timestamptz,
    -- an operator's replay forces the next push through what it would otherwise leave alone
    ADD COLUMN force_write      boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT lead_sync_crm_state CHECK (
        crm_state IS NULL OR crm_state IN ('open', 'qualified', 'disqualified', 'merged', 'deleted')),
    -- a lead left alone as merged says into which record
    ADD CONSTRAINT lead_sync_merged_into CHECK (crm_state IS DISTINCT FROM 'merged' OR crm_merged_into IS NOT NULL);

-- The outcome reader's progress through Dataverse's changed leads: one row, leased by one instance.
CREATE TABLE crm_outcome_reader (
    scope          text PRIMARY KEY DEFAULT 'lead' CHECK (scope = 'lead'),
    modified_since timestamptz,
    lease_token    uuid,
    lease_until    timestamptz
);
INSERT INTO crm_outcome_reader (scope) VALUES ('lead');
