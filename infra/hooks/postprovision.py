"""azd postprovision hook: the deployer becomes a PostgreSQL administrator, migrates, gives the app its rows.

Runs on the machine of the person running `azd up`, signed in with `az login`, with the Bicep outputs in the
environment (azd passes them). In order:

1. make the signed-in user (or service principal) a Microsoft Entra administrator of the PostgreSQL server,
   and wait until the server has applied it; take the app's identity off the administrators if an earlier
   release put it there (the server has no password login at all);
2. create the Hunter webhook secret in Key Vault if it does not exist (webhook_secret.py);
3. reach the server: from inside the virtual network (its name resolves to a private address) directly;
   otherwise through a firewall rule for this machine's public address, with public network access turned
   on for the duration if the server is private (vnetEnabled), and both undone at the end;
4. as the deployer, with an Entra token (`az account get-access-token --resource-type oss-rdbms`) as the
   password, on port 5432: create the app's role for its managed identity, run the migrations, grant the
   app's role its rows (database_setup.py);
5. print how to register the managed identity as an application user in Dataverse (docs/deploy.md).

Every ARM call is retried while the server is busy with another change, and every change is waited for
(azcli.py, flexible_server.py). Every step is safe to repeat: `azd provision` runs the hook again.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import psycopg2
from azcli import Az, AzError
from database_setup import Server, SetupError, ensure_app_role, grant, migrate
from flexible_server import FlexibleServer, Principal
from webhook_secret import SECRET_NAME, ensure_webhook_secret

FIREWALL_RULE = "azd-postprovision"
PUBLIC_ADDRESS_URL = "https://api.ipify.org"
CONNECT_FOR_SECONDS = 15 * 60
CONNECT_RETRY_SECONDS = 15
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
    "AZURE_MANAGED_IDENTITY_PRINCIPAL_ID",
    "AZURE_KEY_VAULT_NAME",
    "AZURE_FUNCTION_APP_NAME",
    "DATAVERSE_URL",
)
# What infra/main.bicep wants the server's public network access to be once the hook is done.
PUBLIC_ACCESS_OUTPUT = "AZURE_POSTGRES_PUBLIC_NETWORK_ACCESS"


class HookError(Exception):
    """A step failed; the message says which and what to do."""


def main() -> int:
    env = _outputs(os.environ)
    try:
        run(env, az=Az())
    except (HookError, AzError, SetupError) as exc:
        print(f"postprovision: {exc}", file=sys.stderr)
        return 1
    return 0


def run(
    env: Mapping[str, str],
    *,
    az: Az,
    public_address: Callable[[], str] | None = None,
    resolve: Callable[[str], list[str]] | None = None,
    port: int = 5432,
    sslmode: str = "require",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Every step, in order. Raises HookError, AzError, SetupError."""
    server = FlexibleServer(az, server_id(env))
    me = signed_in_principal(az)
    print(f"postprovision: PostgreSQL administrator {me.name} ({me.type})")
    if server.ensure_administrator(me, tenant_id=env["AZURE_TENANT_ID"]):
        print("postprovision: administrator added and applied")
    if server.remove_administrator(env["AZURE_MANAGED_IDENTITY_PRINCIPAL_ID"]):
        print(f"postprovision: {env['AZURE_MANAGED_IDENTITY_NAME']} is no longer an administrator")
    if ensure_webhook_secret(
        az,
        _resource_id(env, "Microsoft.KeyVault/vaults", env["AZURE_KEY_VAULT_NAME"]),
        _resource_id(env, "Microsoft.Web/sites", env["AZURE_FUNCTION_APP_NAME"]),
    ):
        print(f"postprovision: {SECRET_NAME} created in {env['AZURE_KEY_VAULT_NAME']}; the app restarted to read it")
    access = deployer_access(
        server,
        env["AZURE_POSTGRES_HOST"],
        wanted_public_access=env.get(PUBLIC_ACCESS_OUTPUT) or "Enabled",
        public_address=public_address or _public_address,
        resolve=resolve or _resolve,
    )
    with access:
        token = az.run(
            "account", "get-access-token", "--resource-type", "oss-rdbms", "--query", "accessToken", "-o", "tsv"
        )
        target = Server(env["AZURE_POSTGRES_HOST"], me.name, token, port=port, sslmode=sslmode)
        set_up_database(target, env, sleep=sleep, clock=clock)
    print_dataverse_step(env)


def set_up_database(
    target: Server, env: Mapping[str, str], *, sleep: Callable[[float], None], clock: Callable[[], float]
) -> None:
    role = env["AZURE_MANAGED_IDENTITY_NAME"]
    object_id = env["AZURE_MANAGED_IDENTITY_PRINCIPAL_ID"]
    # A new administrator or firewall rule can take minutes more to let a sign-in through: the first
    # connection is retried; once it worked, the rest goes the same way.
    deadline = clock() + CONNECT_FOR_SECONDS
    while True:
        try:
            created = ensure_app_role(target, role, object_id)
            break
        except psycopg2.OperationalError as exc:
            if clock() + CONNECT_RETRY_SECONDS > deadline:
                raise HookError(f"cannot sign in to PostgreSQL as {target.user}: {_first_line(exc)}") from exc
            print(f"postprovision: sign-in not yet possible, retrying in {CONNECT_RETRY_SECONDS} s: {_first_line(exc)}")
            sleep(CONNECT_RETRY_SECONDS)
        except psycopg2.Error as exc:
            raise HookError(f"creating the app's role {role} failed: {_first_line(exc)}") from exc
    print(f"postprovision: role {role} {'created' if created else 'exists'} for the app's managed identity")
    database = env["AZURE_POSTGRES_DATABASE"]
    print(f"postprovision: {migrate(target, database)}")
    try:
        grant(target, database, role)
    except psycopg2.Error as exc:
        raise HookError(f"granting {role} its rows failed: {_first_line(exc)}") from exc
    print(f"postprovision: {role} may read and write the sync-state tables, and nothing else")


@contextmanager
def deployer_access(
    server: FlexibleServer,
    host: str,
    *,
    wanted_public_access: str,
    public_address: Callable[[], str],
    resolve: Callable[[str], list[str]],
) -> Iterator[None]:
    """This machine can reach the server for the duration. From inside the virtual network nothing changes;
    from outside, public access (if the server is private) and a firewall rule are added, then undone."""
    addresses = resolve(host)
    if any(ipaddress.ip_address(address).is_private for address in addresses):
        print(f"postprovision: {host} resolves to a private address: connecting through the virtual network")
        yield
        return
    address = public_address()
    try:
        if server.set_public_network_access("Enabled"):
            print("postprovision: public network access on, for this hook only")
        print(f"postprovision: firewall rule {FIREWALL_RULE} for {address} (removed again at the end)")
        server.open_firewall(FIREWALL_RULE, address)
        yield
    except BaseException:
        _close_quietly(server, wanted_public_access)
        raise
    _close(server, wanted_public_access)


def _close(server: FlexibleServer, wanted_public_access: str) -> None:
    server.close_firewall(FIREWALL_RULE)
    if wanted_public_access == "Disabled" and server.set_public_network_access("Disabled"):
        print("postprovision: public network access off again")


def _close_quietly(server: FlexibleServer, wanted_public_access: str) -> None:
    """Undo the access after a failure without hiding that failure."""
    try:
        _close(server, wanted_public_access)
    except AzError as exc:
        print(
            f"postprovision: could not undo this machine's access ({exc}): rerun `azd hooks run postprovision`, "
            f"or delete the firewall rule {FIREWALL_RULE} (and, with vnetEnabled, set public access to Disabled)",
            file=sys.stderr,
        )


def server_id(env: Mapping[str, str]) -> str:
    return _resource_id(env, "Microsoft.DBforPostgreSQL/flexibleServers", env["AZURE_POSTGRES_SERVER_NAME"])


def _resource_id(env: Mapping[str, str], resource_type: str, name: str) -> str:
    return (
        f"/subscriptions/{env['AZURE_SUBSCRIPTION_ID']}/resourceGroups/{env['AZURE_RESOURCE_GROUP']}"
        f"/providers/{resource_type}/{name}"
    )


def signed_in_principal(az: Az) -> Principal:
    """Object id, PostgreSQL role name and type of whoever `az` is signed in as."""
    account = az.json("account", "show", "--query", "user")
    if account.get("type") == "servicePrincipal":
        sp = az.json("ad", "sp", "show", "--id", account["name"], "--query", "{id:id, name:displayName}")
        return Principal(sp["id"], sp["name"], "ServicePrincipal")
    user = az.json("ad", "signed-in-user", "show", "--query", "{id:id, name:userPrincipalName}")
    return Principal(user["id"], user["name"], "User")


def _public_address() -> str:
    try:
        with urllib.request.urlopen(PUBLIC_ADDRESS_URL, timeout=10) as response:
            return response.read().decode().strip()
    except OSError as exc:
        raise HookError(
            f"cannot learn this machine's public address from {PUBLIC_ADDRESS_URL} ({exc}); "
            "add a firewall rule for it by hand and run `azd hooks run postprovision`"
        ) from exc


def _resolve(host: str) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, 5432, proto=socket.IPPROTO_TCP)})
    except OSError as exc:
        raise HookError(f"cannot resolve {host}: {exc}") from exc


def print_dataverse_step(env: Mapping[str, str]) -> None:
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


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _outputs(environ: Mapping[str, str]) -> dict[str, str]:
    missing = [name for name in NEEDED if not environ.get(name)]
    if missing:
        print(f"postprovision: missing {', '.join(missing)}: run this as an azd hook (azd provision)", file=sys.stderr)
        raise SystemExit(2)
    return {name: environ[name] for name in (*NEEDED, PUBLIC_ACCESS_OUTPUT) if environ.get(name)}


if __name__ == "__main__":
    raise SystemExit(main())
