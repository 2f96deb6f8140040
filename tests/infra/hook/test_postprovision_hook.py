"""The postprovision hook, whole, against a fake `az` on PATH and a real PostgreSQL.

The fake (fake_az.py) answers the way the hook meets a new Flexible Server: busy with azd's own last change at
first, `az rest` returning before a change is done, `ServerBusy` for any change asked meanwhile, errors as the
CLI prints them. The PostgreSQL half runs on 127.0.0.1: a throwaway database owned by a deployer role with
CREATEROLE (as an Entra administrator is), and a stand-in for Azure's `pgaadauth_create_principal_with_oid`
that creates the role and notes the object id it was given. Time is a fake clock moved by the hook's sleeps.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psycopg2
import psycopg2.errors
import pytest
import yaml
from psycopg2 import sql

from local import services
from tests.infra.bicep_model import ROOT
from tests.infra.hook.app_statements import exercise_store, unissued
from tests.infra.hook.hook_modules import HOOKS, azcli, database_setup, postprovision

FAKE_AZ = Path(__file__).with_name("fake_az.py")
SERVER_ID = "/subscriptions/sub-1/resourceGroups/rg-leadpush/providers/Microsoft.DBforPostgreSQL/flexibleServers/psql-1"
PUBLIC_ADDRESS = "203.0.113.7"
STANDIN = """
CREATE FUNCTION {schema}.pgaadauth_create_principal_with_oid(
    role_name text, object_id text, object_type text, is_admin boolean, is_mfa boolean) RETURNS text
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('CREATE ROLE %I LOGIN', role_name);
    EXECUTE format('COMMENT ON ROLE %I IS %L', role_name,
                   format('oid=%s type=%s admin=%s mfa=%s', object_id, object_type, is_admin, is_mfa));
    RETURN 'Created role for ' || role_name;
END $$
"""


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    def clock(self) -> float:
        return self.now


@dataclass
class Deployment:
    """One server's worth of fake Azure and real PostgreSQL, and the hook's environment for it."""

    server_url: str
    database: str
    deployer: str
    app_role: str
    app_oid: str
    state_path: Path
    env: dict[str, str]
    time: FakeTime = field(default_factory=FakeTime)

    @property
    def state(self) -> dict:
        return json.loads(self.state_path.read_text())

    def script(self, **changes) -> None:
        self.state_path.write_text(json.dumps({**self.state, **changes}))

    def run(self, *, resolve=lambda host: ["20.50.2.10"]) -> None:
        port = psycopg2.extensions.parse_dsn(self.server_url).get("port", "5432")
        az = azcli.Az(sleep=self.time.sleep, clock=self.time.clock, jitter=lambda: 0.5)
        postprovision.run(
            self.env, az=az, public_address=lambda: PUBLIC_ADDRESS, resolve=resolve,
            port=int(port), sslmode="prefer", sleep=self.time.sleep, clock=self.time.clock,
        )

    def app_url(self) -> str:
        return psycopg2.extensions.make_dsn(services.with_database(self.server_url, self.database), user=self.app_role)

    def calls_since(self, start: int) -> list[list[str]]:
        return self.state["calls"][start:]


def _admin(url: str, statement, params=None) -> list[tuple]:
    connection = psycopg2.connect(url, connect_timeout=5)
    connection.autocommit = True
    try:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []
    finally:
        connection.close()


def _install_fake_az(directory: Path) -> Path:
    bin_dir = directory / "bin"
    bin_dir.mkdir()
    az = bin_dir / "az"
    az.write_text(f"#!{sys.executable}\n" + FAKE_AZ.read_text())
    az.chmod(0o755)
    return bin_dir


@pytest.fixture
def deployment(postgres_server, tmp_path, monkeypatch):
    token = secrets.token_hex(4)
    deployer, app_role = f"deployer_{token}", f"id-leadpush-{token}"
    database, schema = f"leadpush_hook_{token}", f"pgaadauth_standin_{token}"
    maintenance = services.with_database(postgres_server.url, database_setup.MAINTENANCE_DATABASE)
    _admin(postgres_server.url, sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(sql.Identifier(deployer)))
    url = services.create_database(postgres_server.url, database)
    _admin(url, sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(database), sql.Identifier(deployer)))
    _admin(maintenance, sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    _admin(maintenance, sql.SQL(STANDIN).format(schema=sql.Identifier(schema)))
    _admin(maintenance, sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sql.Identifier(schema),
                                                                         sql.Identifier(deployer)))
    _admin(maintenance, sql.SQL("ALTER ROLE {} IN DATABASE postgres SET search_path = {}, public").format(
        sql.Identifier(deployer), sql.Identifier(schema)))

    app_oid, deployer_oid = str(uuid.uuid4()), str(uuid.uuid4())
    state_path = tmp_path / "az-state.json"
    state_path.write_text(json.dumps({
        "account": {"name": deployer, "type": "user"},
        "signed_in_user": {"id": deployer_oid, "name": deployer},
        "token": f"entra-token-{token}",
        "server": {"id": SERVER_ID, "publicNetworkAccess": "Disabled"},
        # An earlier release made the app's identity an administrator.
        "administrators": {app_oid: {"properties": {
            "principalType": "ServicePrincipal", "principalName": app_role, "objectId": app_oid,
            "tenantId": "tenant-1", "provisioningState": "Succeeded"}}},
        "firewallRules": {},
        "vault": {"name": f"kv-{token}", "secrets": {}},
        "site": {"name": f"func-{token}", "restarts": 0},
        "busy_for": 4,
        "operation_calls": 3,
        "operation": None,
        "calls": [],
        "refused": [],
    }))
    monkeypatch.setenv("PATH", f"{_install_fake_az(tmp_path)}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_AZ_STATE", str(state_path))
    env = {
        "AZURE_SUBSCRIPTION_ID": "sub-1",
        "AZURE_TENANT_ID": "tenant-1",
        "AZURE_RESOURCE_GROUP": "rg-leadpush",
        "AZURE_POSTGRES_SERVER_NAME": "psql-1",
        "AZURE_POSTGRES_HOST": psycopg2.extensions.parse_dsn(postgres_server.url).get("host", "127.0.0.1"),
        "AZURE_POSTGRES_DATABASE": database,
        "AZURE_MANAGED_IDENTITY_NAME": app_role,
        "AZURE_MANAGED_IDENTITY_CLIENT_ID": str(uuid.uuid4()),
        "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID": app_oid,
        "AZURE_KEY_VAULT_NAME": f"kv-{token}",
        "AZURE_FUNCTION_APP_NAME": f"func-{token}",
        "DATAVERSE_URL": "https://contoso.crm4.dynamics.com",
        "AZURE_POSTGRES_PUBLIC_NETWORK_ACCESS": "Disabled",
    }
    yield Deployment(postgres_server.url, database, deployer, app_role, app_oid, state_path, env)

    services.drop_database(postgres_server.url, database)
    _admin(maintenance, sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    for role in (app_role, deployer):
        _admin(postgres_server.url, sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _changes(calls: list[list[str]], collection: str = "") -> list[tuple[str, str]]:
    """(method, url) of each `az rest` change among `calls` whose url names `collection`."""
    found = []
    for call in calls:
        if call[:1] == ["rest"] and call[call.index("--method") + 1] != "get":
            url = call[call.index("--url") + 1]
            if collection in url:
                found.append((call[call.index("--method") + 1], url))
    return found


# --- the Azure half ------------------------------------------------------------------------------


def test_the_hook_succeeds_against_a_busy_server_and_leaves_it_as_the_template_wants(deployment, capsys):
    deployment.run()

    state = deployment.state
    # The server was busy and said so: the hook waited and retried rather than failing.
    refused = [refusal for refusal in state["refused"] if _changes([refusal["call"]])]
    assert refused and {refusal["code"] for refusal in refused} == {"ServerBusy"}
    assert state["operation"] is None  # its last change finished before it returned
    admins = {admin["properties"]["principalName"]: admin["properties"] for admin in state["administrators"].values()}
    assert admins[deployment.deployer]["provisioningState"] == "Succeeded"
    assert deployment.app_oid not in state["administrators"]
    assert state["firewallRules"] == {}
    assert state["server"]["publicNetworkAccess"] == "Disabled"
    # Each change was asked only once it could be accepted, or refused busy and asked again.
    server_changes = [change for change in _changes(state["calls"]) if "/flexibleServers/" in change[1]]
    assert len(server_changes) - len(refused) == 6  # admin put, app admin delete, access on/off, rule put/delete
    assert "firewall rule azd-postprovision for 203.0.113.7" in capsys.readouterr().out


def test_a_second_run_succeeds_and_changes_only_the_temporary_access(deployment, capsys):
    deployment.run()
    first = len(deployment.state["calls"])
    roles_before = _admin(deployment.server_url, "SELECT rolname FROM pg_roles ORDER BY 1")
    capsys.readouterr()

    deployment.run()

    again = deployment.calls_since(first)
    assert _changes(again, "/administrators") == []
    assert [method for method, _ in _changes(again)] == ["patch", "put", "delete", "patch"]
    assert _admin(deployment.server_url, "SELECT rolname FROM pg_roles ORDER BY 1") == roles_before
    out = capsys.readouterr().out
    assert f"role {deployment.app_role} exists" in out
    assert "schema up to date" in out
    assert deployment.state["server"]["publicNetworkAccess"] == "Disabled"


def test_from_inside_the_virtual_network_the_server_is_not_opened(deployment):
    deployment.run(resolve=lambda host: ["10.0.1.4"])

    state = deployment.state
    assert _changes(state["calls"], "/firewallRules") == []
    server_changes = [url for _, url in _changes(state["calls"], "/flexibleServers/")]
    assert [url for url in server_changes if "/administrators" not in url] == []
    assert state["server"]["publicNetworkAccess"] == "Disabled"


def test_a_refusal_that_is_not_busy_stops_the_hook_at_once_with_the_clis_error(deployment):
    deployment.script(fail={"method": "put", "path_contains": "/administrators/", "times": 1, "phrase": "Forbidden",
                            "code": "AuthorizationFailed", "message": "The client does not have authorization"})

    with pytest.raises(azcli.AzError) as error:
        deployment.run()

    assert (error.value.status, error.value.code) == (403, "AuthorizationFailed")
    assert "does not have authorization" in str(error.value)
    assert len(_changes(deployment.state["calls"], "/administrators/")) == 1  # not retried
    assert _changes(deployment.state["calls"], "/firewallRules") == []


def test_a_server_busy_for_longer_than_the_budget_ends_the_hook_with_a_timeout(deployment):
    deployment.script(busy_for=100_000)

    with pytest.raises(azcli.AzTimeout, match="still busy"):
        deployment.run()

    assert azcli.BUDGET_SECONDS - azcli.MAX_DELAY_SECONDS <= deployment.time.now <= azcli.BUDGET_SECONDS
    # capped back-off: a handful of attempts, not one a second
    assert 15 <= len([r for r in deployment.state["refused"] if r["code"] == "ServerBusy"]) <= 30


def test_a_failure_while_the_server_is_open_still_closes_it(deployment):
    # The app's role exists with administrator rights (as an earlier release left it): the hook must stop.
    role = sql.Identifier(deployment.app_role)
    _admin(deployment.server_url, sql.SQL("CREATE ROLE {} LOGIN CREATEROLE").format(role))

    with pytest.raises(database_setup.SetupError, match="azure_pg_admin"):
        deployment.run()

    state = deployment.state
    assert state["firewallRules"] == {}
    assert state["server"]["publicNetworkAccess"] == "Disabled"
    assert state["operation"] is None


def test_az_errors_are_read_as_the_cli_prints_them():
    busy = azcli.parse_error(["rest"], 'ERROR: Conflict({"error":{"code":"ServerBusy","message":"busy"}})\n')
    missing = azcli.parse_error(["rest"], 'ERROR: Not Found({"error":{"code":"ResourceNotFound","message":"x"}})')
    generic = azcli.parse_error(["postgres"], "ERROR: (ServerIsBusy) Server is busy.\nCode: ServerIsBusy\n")
    denied = azcli.parse_error(["rest"], 'ERROR: Forbidden({"error":{"code":"AuthorizationFailed","message":"no"}})')

    assert (busy.status, busy.code, busy.busy) == (409, "ServerBusy", True)
    assert (missing.status, missing.not_found, missing.busy) == (404, True, False)
    assert (generic.code, generic.busy) == ("ServerIsBusy", True)
    assert (denied.status, denied.busy) == (403, False)


def test_the_az_executable_is_found_through_path_lookup(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(azcli.AzError, match="not on PATH"):
        azcli.Az().run("account", "show")


def test_the_webhook_secret_is_created_once_through_arm_and_never_shown(deployment, capsys):
    deployment.run()
    first = deployment.state
    (secret,) = first["vault"]["secrets"].values()

    deployment.run()

    assert len(secret["value"]) >= 43  # 32 random bytes, base64url
    assert deployment.state["vault"]["secrets"] == first["vault"]["secrets"]  # a rerun keeps it
    assert deployment.state["site"]["restarts"] == 1  # once, so the app's Key Vault reference resolves
    assert secret["value"] not in capsys.readouterr().out
    # through a file, never on az's command line
    assert not [call for call in deployment.state["calls"] if secret["value"] in " ".join(call)]


def test_an_existing_webhook_secret_is_left_alone(deployment):
    deployment.script(vault={"name": deployment.env["AZURE_KEY_VAULT_NAME"],
                             "secrets": {"hunter-webhook-secret": {"value": "given-to-hunter", "contentType": None}}})

    deployment.run()

    assert deployment.state["vault"]["secrets"]["hunter-webhook-secret"]["value"] == "given-to-hunter"
    assert deployment.state["site"]["restarts"] == 0


# --- the PostgreSQL half -------------------------------------------------------------------------


def test_the_apps_role_is_created_for_its_managed_identity_and_is_no_administrator(deployment):
    deployment.run()

    (comment,) = _admin(deployment.server_url, "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles"
                        " WHERE rolname = %s", (deployment.app_role,))
    assert comment == (f"oid={deployment.app_oid} type=service admin=f mfa=f",)
    owners = _admin(services.with_database(deployment.server_url, deployment.database),
                    "SELECT DISTINCT tableowner FROM pg_tables WHERE schemaname = 'public'")
    assert owners == [(deployment.deployer,)]  # migrated by the deployer, never by the app


def test_every_statement_the_app_issues_works_as_the_apps_role(deployment):
    deployment.run()

    seen = exercise_store(deployment.app_url())

    assert unissued(seen) == []


DDL = [
    "CREATE TABLE probe (id int)",
    "ALTER TABLE lead_sync ADD COLUMN probe int",
    "CREATE INDEX probe ON lead_sync (status)",
    "DROP TABLE sync_attempt",
    "TRUNCATE lead_sync",
    "CREATE SCHEMA probe",
    "CREATE ROLE probe",
    "INSERT INTO schema_migration (version) VALUES ('999_probe')",
    "SELECT setval('sync_attempt_id_seq', 1)",
]


def test_the_apps_role_cannot_change_the_schema(deployment):
    deployment.run()
    connection = psycopg2.connect(deployment.app_url(), connect_timeout=5)
    connection.autocommit = True

    refused = []
    try:
        for statement in DDL:
            with connection.cursor() as cursor:
                try:
                    cursor.execute(statement)
                except psycopg2.errors.InsufficientPrivilege:
                    refused.append(statement)
    finally:
        connection.close()

    assert refused == DDL


def test_without_its_grants_the_apps_statements_fail(deployment):
    """The check above can fail: the app's role without grant_app_role.sql cannot do its work."""
    deployment.run()
    revoke = sql.SQL("REVOKE USAGE ON ALL SEQUENCES IN SCHEMA public FROM {}")
    _admin(services.with_database(deployment.server_url, deployment.database),
           revoke.format(sql.Identifier(deployment.app_role)))

    with pytest.raises(psycopg2.errors.InsufficientPrivilege, match="sync_attempt_id_seq"):
        exercise_store(deployment.app_url())


def test_azure_yaml_runs_a_wrapper_per_platform_and_each_prefers_the_projects_venv():
    hooks = yaml.safe_load((ROOT / "azure.yaml").read_text())["hooks"]["postprovision"]
    ps1 = (HOOKS / "postprovision.ps1").read_text()

    assert (hooks["posix"]["shell"], hooks["posix"]["run"]) == ("sh", "./infra/hooks/postprovision.sh")
    assert (hooks["windows"]["shell"], hooks["windows"]["run"]) == ("pwsh", "./infra/hooks/postprovision.ps1")
    assert r".venv\Scripts\python.exe" in ps1
    assert r"infra\hooks\postprovision.py" in ps1
    assert "exit $LASTEXITCODE" in ps1


def test_the_shell_wrapper_runs_the_hook_with_the_projects_python():
    done = subprocess.run(["sh", str(HOOKS / "postprovision.sh")], env={"PATH": os.environ["PATH"]},
                          capture_output=True, text=True, timeout=60)

    # The hook itself answered (outside azd it names the outputs it misses), so the wrapper found Python.
    assert done.returncode == 2
    assert "missing AZURE_SUBSCRIPTION_ID" in done.stderr
