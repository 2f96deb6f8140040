-- Run by postprovision.py after the migrations, as the Entra administrator who ran them (and so owns the tables).
-- The app's role gets the rows, never the schema: it does not migrate, it only reads and writes sync state.
-- {app_role} is the app's managed identity, quoted as an identifier by psycopg2.sql.
GRANT USAGE ON SCHEMA public TO {app_role};
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {app_role};
-- The migrations' own ledger is the deployer's: a row there would make a migration look applied.
REVOKE ALL ON schema_migration FROM {app_role};
-- nextval() for serial columns needs USAGE only; SELECT and UPDATE (currval, setval) were granted by an
-- earlier release and are taken back.
REVOKE SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public FROM {app_role};
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {app_role};
-- Tables a later migration creates (run by the same administrator) are granted without running this again.
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {app_role};
ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE SELECT, UPDATE ON SEQUENCES FROM {app_role};
ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE ON SEQUENCES TO {app_role};
