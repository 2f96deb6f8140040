"""azd postprovision hook: migrate the new database, grant the app its rows, print the one manual step.

Runs on the machine of the person running `azd up`, signed in with `az login`, with the Bicep outputs in the
environment (azd passes them). In order:

1. make the signed-in user (or service principal) a Microsoft Entra administrator of the PostgreSQL server,
   next to the app's identity (the server has no password login at all);
2. open the server's firewall to this machine's public address, for the duration of the hook only;
3. `python -m shared.postgres.migrate` with an Entra token of the signed-in user as libpq's PGPASSWORD
   (`az account get-access-token --resource-type oss-rdbms`), straight to port 5432 (not PgBouncer);
4. grant the app's role its rows (grant_app_role.sql);
5. print how to register the managed identity as an application user in Dataverse (docs/deploy.md).

Every step is safe to repeat: `azd provision` runs the hook again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[2]
GRANTS = Path(__file__).with_name("grant_app_role.sql")
POSTGRES_API = "2024-08-01"
FIREWALL_RULE = "azd-postprovision"
PUBLIC_ADDRESS_URL = "https://api.ipify.org"
RETRY_SECONDS = 15
RETRY_FOR_SECONDS = 600
# azd sets AZURE_SUBSCRIPTION_ID itself; the rest are outputs of infra/main.bicep.
NEEDED = (
    "AZURE_SUBSCRIPTION_ID",
    "AZURE_TENANT_ID",
    "AZURE_RESOURCE_GROUP",
    "AZURE_POSTGRES_SERVER_NAME",
    "AZURE_POSTGRES_HOST",
    "AZURE_POSTGRES_DATABASE",
    "AZURE_MANAGED_IDENTITY_NAME",
    "AZURE_MANAGED_IDENTITY_CLIENT_ID",
    "DATAVERSE_URL",
)


class HookError(Exception):
    """A step failed; the message says which and what to do."""


def main() -> int:
    env = _outputs(os.environ)
    try:
        run(env)
    except HookError as exc:
        print(f"postprovision: {exc}", file=sys.stderr)
        return 1
    return 0


def run(env: dict[str, str]) -> None:
    server_id = (
        f"/subscriptions/{env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{env['AZURE_RESOURCE_GROUP']}"
        f"/providers/Microsoft.DBforPostgreSQL/flexibleServers/{env['AZURE_POSTGRES_SERVER_NAME']}"
    )
    me = signed_in_principal()
    print(f"postprovision: PostgreSQL administrator {me['name']} ({me['type']})")
    ensure_administrator(server_id, me, tenant_id=env["AZURE_TENANT_ID"])
    address = public_address()
    print(f"postprovision: firewall rule {FIREWALL_RULE} for {address} (removed again at the end)")
    _arm(
        "put",
        f"{server_id}/firewallRules/{FIREWALL_RULE}",
        {"properties": {"startIpAddress": address, "endIpAddress": address}},
    )
    try:
        url = (
            f"postgresql://{quote(me['name'], safe='')}@{env['AZURE_POSTGRES_HOST']}:5432/"
            f"{env['AZURE_POSTGRES_DATABASE']}?sslmode=require"
        )
        _retrying("migrations", lambda: migrate(url))
        _retrying("grants", lambda: grant(url, env["AZURE_MANAGED_IDENTITY_NAME"]))
    finally:
        _arm("delete", f"{server_id}/firewallRules/{FIREWALL_RULE}", None, check=False)
    print_dataverse_step(env)


def signed_in_principal() -> dict[str, str]:
    """Object id, PostgreSQL role name and type of whoever `az` is signed in as."""
    account = json.loads(_az("account", "show", "--query", "user", "-o", "json"))
    if account.get("type") == "servicePrincipal":
        sp = json.loads(
            _az("ad", "sp", "show", "--id", account["name"], "--query", "{id:id, name:displayName}", "-o", "json")
        )
        return {"id": sp["id"], "name": sp["name"], "type": "ServicePrincipal"}
    user = json.loads(_az("ad", "signed-in-user", "show", "--query", "{id:id, name:userPrincipalName}", "-o", "json"))
    return {"id": user["id"], "name": user["name"], "type": "User"}


def ensure_administrator(server_id: str, principal: dict[str, str], *, tenant_id: str) -> None:
    admins = json.loads(_arm("get", f"{server_id}/administrators", None) or "{}").get("value", [])
    if any(admin.get("name") == principal["id"] for admin in admins):
        return
    _arm(
        "put",
        f"{server_id}/administrators/{principal['id']}",
        {"properties": {"principalType": principal["type"], "principalName": principal["name"], "tenantId": tenant_id}},
    )
    print("postprovision: administrator requested; the server applies it within a few minutes")


def public_address() -> str:
    try:
        with urllib.request.urlopen(PUBLIC_ADDRESS_URL, timeout=10) as response:
            return response.read().decode().strip()
    except OSError as exc:
        raise HookError(
            f"cannot learn this machine's public address from {PUBLIC_ADDRESS_URL} ({exc}); "
            "add a firewall rule for it by hand and run `azd hooks run postprovision`"
        ) from exc


def migrate(url: str) -> None:
    token = _az("account", "get-access-token", "--resource-type", "oss-rdbms", "--query", "accessToken", "-o", "tsv")
    env = {**os.environ, "DATABASE_URL": url, "DATABASE_AUTH": "password", "PGPASSWORD": token}
    done = subprocess.run([sys.executable, "-m", "shared.postgres.migrate"], cwd=ROOT, env=env, text=True, capture_output=True)
    print(done.stdout, end="")
    if done.returncode != 0:
        raise HookError(f"python -m shared.postgres.migrate failed: {done.stderr.strip()}")


def grant_statements(app_role: str):
    """grant_app_role.sql with the app's role quoted as an identifier."""
    from psycopg2 import sql

    return sql.SQL(GRANTS.read_text()).format(app_role=sql.Identifier(app_role))


def grant(url: str, app_role: str) -> None:
    import psycopg2

    token = _az("account", "get-access-token", "--resource-type", "oss-rdbms", "--query", "accessToken", "-o", "tsv")
    try:
        connection = psycopg2.connect(url, password=token, connect_timeout=10)
    except psycopg2.Error as exc:
        raise HookError(f"cannot connect to grant the app's role: {str(exc).strip()}") from exc
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute(grant_statements(app_role))
    except psycopg2.Error as exc:
        raise HookError(f"granting {app_role} failed: {str(exc).strip()}") from exc
    finally:
        connection.close()
    print(f"postprovision: {app_role} may read and write the sync-state tables")


def print_dataverse_step(env: dict[str, str]) -> None:
    client_id = env["AZURE_MANAGED_IDENTITY_CLIENT_ID"]
    print(f"""
postprovision: one step is left, and only a Dataverse administrator can take it.
  Register the app's managed identity as an application user of {env["DATAVERSE_URL"]}
  with a security role that can read lead metadata and create, read and update leads:
    pac admin assign-user --environment {env["DATAVERSE_URL"]} --user {client_id} \\
      --role "<your lead push role>" --application-user
  or Power Platform admin center > Environments > (environment) > Settings > Users + permissions >
  Application users > + New app user > app id {client_id}. Details: docs/deploy.md.
""")


def _retrying(what: str, step) -> None:
    """New administrators and firewall rules take a few minutes to apply: retry until they have."""
    deadline = time.monotonic() + RETRY_FOR_SECONDS
    while True:
        try:
            step()
            return
        except HookError as exc:
            if time.monotonic() > deadline:
                raise
            print(f"postprovision: {what} not yet possible, retrying in {RETRY_SECONDS} s: {exc}")
            time.sleep(RETRY_SECONDS)


def _arm(method: str, resource: str, body: dict | None, *, check: bool = True) -> str:
    args = ["rest", "--method", method, "--url", f"https://management.azure.com{resource}?api-version={POSTGRES_API}"]
    if body is not None:
        args += ["--body", json.dumps(body)]
    return _az(*args, check=check)


def _az(*args: str, check: bool = True) -> str:
    done = subprocess.run(["az", *args], text=True, capture_output=True)
    if check and done.returncode != 0:
        raise HookError(f"az {' '.join(args[:3])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def _outputs(environ: Mapping[str, str]) -> dict[str, str]:
    missing = [name for name in NEEDED if not environ.get(name)]
    if missing:
        print(f"postprovision: missing {', '.join(missing)}: run this as an azd hook (azd provision)", file=sys.stderr)
        raise SystemExit(2)
    return {name: environ[name] for name in NEEDED}


if __name__ == "__main__":
    raise SystemExit(main())
