"""The postprovision hook's database half against a real PostgreSQL: the migrations run as `shared.postgres.migrate`
does for the hook, and grant_app_role.sql gives the app's role the rows of every table (and of tables a later
migration adds) but not the schema. The Azure half (az, Entra administrators, firewall) needs Azure."""

from __future__ import annotations

import importlib.util
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
from tests.infra.bicep_model import INFRA, ROOT, load


def _load_hook():
    spec = importlib.util.spec_from_file_location("postprovision", INFRA / "hooks" / "postprovision.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hook = _load_hook()


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
        cursor.execute(hook.grant_statements(app_role))

    privileges = _privileges(migrated_database, app_role)
    assert "lead_sync" in privileges
    assert set(privileges.values()) == {True}
    with psycopg2.connect(migrated_database) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT has_schema_privilege(%(role)s, 'public', 'CREATE')", {"role": app_role})
        assert cursor.fetchone() == (False,)


def test_tables_a_later_migration_creates_are_granted_too(migrated_database, app_role):
    with psycopg2.connect(migrated_database) as connection, connection.cursor() as cursor:
        cursor.execute(hook.grant_statements(app_role))
        cursor.execute("CREATE TABLE later_migration (id int PRIMARY KEY)")

    assert _privileges(migrated_database, app_role)["later_migration"] is True


def test_grants_are_safe_to_repeat(migrated_database, app_role):
    with psycopg2.connect(migrated_database) as connection, connection.cursor() as cursor:
        cursor.execute(hook.grant_statements(app_role))
        cursor.execute(hook.grant_statements(app_role))

    assert set(_privileges(migrated_database, app_role).values()) == {True}


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
