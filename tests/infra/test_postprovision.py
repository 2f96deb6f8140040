"""grant_app_role.sql against a real PostgreSQL: the app's role gets the rows of every table (and of tables a
later migration adds) but not the schema, nor the migrations' ledger. The whole hook, against a fake `az` and
with the app's own statements, is tested in tests/infra/hook/."""

from __future__ import annotations

import io
import os
import secrets
import subprocess
import sys
from contextlib import redirect_stdout

import psycopg2
import pytest
from psycopg2 import sql

from local import services
from tests.infra.bicep_model import ROOT, load
from tests.infra.hook.hook_modules import database_setup
from tests.infra.hook.hook_modules import postprovision as hook

MIGRATIONS_LEDGER = "schema_migration"


@pytest.fixture
def migrated_database(postgres_server):
    name = f"leadpush_hook_{secrets.token_hex(4)}"
    url = services.create_database(postgres_server.url, name)
    env = {**os.environ, "DATABASE_URL": url, "DATABASE_AUTH": "password"}
    done = subprocess.run([sys.executable, "-m", "shared.postgres.migrate"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    yield url
    services.drop_database(postgres_server.url, name)


@pytest.fixture
def app_role(migrated_database):
    role = f"id-leadpush-{secrets.token_hex(3)}"  # a managed identity's name, hyphens and all
    with psycopg2.connect(migrated_database) as connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(role)))
    yield role
    connection = psycopg2.connect(migrated_database)
    connection.autocommit = True
    with connection.cursor() as cursor:
        cursor.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        cursor.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
    connection.close()


def _privileges(url: str, role: str) -> dict[str, bool]:
    with psycopg2.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(
            "SELECT tablename, has_table_privilege(%(role)s, format('public.%%I', tablename),"
            " 'SELECT, INSERT, UPDATE, DELETE') AND NOT has_table_privilege(%(role)s,"
            " format('public.%%I', tablename), 'TRUNCATE')"
            " FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename",
            {"role": role},
        )
        return dict(cursor.fetchall())


def test_grants_give_the_app_role_every_tables_rows_and_nothing_more(migrated_database, app_role):
    assert set(_privileges(migrated_database, app_role).values()) == {False}

    with psycopg2.connect(migrated_database) as connection, connection.cursor() as cursor:
        cursor.execute(database_setup.grant_statements(app_role))

    privileges = _privileges(migrated_database, app_role)
    assert "lead_sync" in privileges
    assert privileges.pop(MIGRATIONS_LEDGER) is False
    assert set(privileges.values()) == {True}
    with psycopg2.connect(migrated_database) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT has_schema_privilege(%(role)s, 'public', 'CREATE')", {"role": app_role})
        assert cursor.fetchone() == (False,)


def test_tables_a_later_migration_creates_are_granted_too(migrated_database, app_role):
    with psycopg2.connect(migrated_database) as connection, connection.cursor() as cursor:
        cursor.execute(database_setup.grant_statements(app_role))
        cursor.execute("CREATE TABLE later_migration (id int PRIMARY KEY)")

    assert _privileges(migrated_database, app_role)["later_migration"] is True


def test_grants_are_safe_to_repeat(migrated_database, app_role):
    with psycopg2.connect(migrated_database) as connection, connection.cursor() as cursor:
        cursor.execute(database_setup.grant_statements(app_role))
        cursor.execute(database_setup.grant_statements(app_role))

    privileges = _privileges(migrated_database, app_role)
    assert privileges.pop(MIGRATIONS_LEDGER) is False
    assert set(privileges.values()) == {True}


def test_sequences_are_usable_but_not_settable(migrated_database, app_role):
    with psycopg2.connect(migrated_database) as connection, connection.cursor() as cursor:
        cursor.execute(sql.SQL("GRANT SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO {}").format(
            sql.Identifier(app_role)))  # what an earlier release granted
        cursor.execute(database_setup.grant_statements(app_role))
        cursor.execute(
            "SELECT has_sequence_privilege(%(role)s, 'sync_attempt_id_seq', 'USAGE'),"
            " has_sequence_privilege(%(role)s, 'sync_attempt_id_seq', 'SELECT'),"
            " has_sequence_privilege(%(role)s, 'sync_attempt_id_seq', 'UPDATE')",
            {"role": app_role},
        )
        assert cursor.fetchone() == (True, False, False)


def test_the_dataverse_step_names_the_identitys_client_id():
    out = io.StringIO()
    with redirect_stdout(out):
        hook.print_dataverse_step(
            {
                "AZURE_MANAGED_IDENTITY_CLIENT_ID": "6f1c1a52-0000-4000-8000-00000000c1d0",
                "DATAVERSE_URL": "https://contoso.crm4.dynamics.com",
            }
        )

    text = out.getvalue()
    assert "pac admin assign-user --environment https://contoso.crm4.dynamics.com" in text
    assert "--user 6f1c1a52-0000-4000-8000-00000000c1d0" in text
    assert "--application-user" in text


def test_outside_azd_the_hook_names_what_is_missing(capsys):
    with pytest.raises(SystemExit) as exit_:
        hook._outputs({"AZURE_TENANT_ID": "t"})

    assert exit_.value.code == 2
    assert "AZURE_POSTGRES_HOST" in capsys.readouterr().err


def test_the_hook_reads_only_outputs_main_bicep_declares():
    outputs = set(load("main.bicep").tree["outputs"])

    assert set(hook.NEEDED) - {"AZURE_SUBSCRIPTION_ID"} <= outputs
    assert hook.PUBLIC_ACCESS_OUTPUT in outputs
