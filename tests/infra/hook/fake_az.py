"""A stand-in for the Azure CLI, installed as `az` on PATH by the hook's tests. Standard library only.

It keeps a PostgreSQL Flexible Server's control plane in a JSON file ($FAKE_AZ_STATE) and behaves as the hook
meets the real one:
- time is counted in `az` invocations: an accepted change runs for `operation_calls` of them, and the server
  starts `busy_for` invocations into a change of its own (azd's deployment has just finished);
- `az rest` returns as soon as a change is accepted (no body, as for a 202), before it is done: meanwhile the
  server is `Updating` and a new administrator or rule is listed `InProgress`;
- a change requested while another runs fails as `az rest` fails: exit 1 and
  `ERROR: Conflict({"error":{"code":"ServerBusy",...}})` on stderr; a missing resource is `Not Found(...)`;
- `fail` in the state scripts one non-transient failure (e.g. 403 AuthorizationFailed);
- anything it does not know exits 2.
Every call is appended to `calls`, every refusal to `refused`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from urllib.parse import urlsplit

STATE = Path(os.environ["FAKE_AZ_STATE"])
VAULT_SECRET = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.KeyVault/vaults/([^/]+)/secrets/([^/]+)$", re.I
)
SITE_RESTART = re.compile(
    r"^/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.Web/sites/([^/]+)/restart$", re.I
)
SERVER_PATH = re.compile(
    r"^(/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\.DBforPostgreSQL/flexibleServers/[^/]+)(.*)$",
    re.I,
)


def main(argv: list[str]) -> int:
    state = json.loads(STATE.read_text())
    state["calls"].append(argv)
    _tick(state)
    try:
        out = _dispatch(state, argv)
    except _Fail as fail:
        state["refused"].append({"call": argv, "code": fail.code})
        STATE.write_text(json.dumps(state))
        sys.stderr.write(fail.stderr)
        return fail.exit_code
    STATE.write_text(json.dumps(state))
    if out is not None:
        sys.stdout.write(out if isinstance(out, str) else json.dumps(out))
        sys.stdout.write("\n")
    return 0


class _Fail(Exception):
    def __init__(self, phrase: str, code: str, message: str, exit_code: int = 1) -> None:
        self.code = code
        self.exit_code = exit_code
        body = json.dumps({"error": {"code": code, "message": message}}, separators=(",", ":"))
        self.stderr = f"ERROR: {phrase}({body})\n"


def _tick(state: dict) -> None:
    operation = state.get("operation")
    if operation is None:
        if state.get("busy_for", 0) > 0:
            state["operation"] = {"remaining": state.pop("busy_for"), "apply": None}
        return
    operation["remaining"] -= 1
    if operation["remaining"] <= 0:
        _apply(state, operation["apply"])
        state["operation"] = None


def _apply(state: dict, change: dict | None) -> None:
    if change is None:
        return
    kind, name = change["kind"], change.get("name")
    if kind == "put":
        state[change["collection"]][name]["properties"]["provisioningState"] = "Succeeded"
    elif kind == "delete":
        state[change["collection"]].pop(name, None)
    elif kind == "network":
        state["server"]["publicNetworkAccess"] = change["value"]


def _dispatch(state: dict, argv: list[str]) -> object:
    args = [a for a in argv if a not in ("-o", "json", "tsv")]
    if args[:2] == ["account", "show"]:
        return state["account"]
    if args[:3] == ["ad", "signed-in-user", "show"]:
        return state["signed_in_user"]
    if args[:2] == ["account", "get-access-token"] and "oss-rdbms" in args:
        return state["token"]
    if args[:1] == ["rest"]:
        return _rest(state, _option(args, "--method"), _option(args, "--url"), _body(args))
    raise _Fail("Bad Request", "UnknownCommand", f"the fake az does not know: az {' '.join(argv)}", exit_code=2)


def _option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


def _body(args: list[str]) -> dict | None:
    if "--body" not in args:
        return None
    value = _option(args, "--body")
    return json.loads(Path(value[1:]).read_text() if value.startswith("@") else value)


def _rest(state: dict, method: str, url: str, body: dict | None) -> object:
    parts = urlsplit(url)
    if parts.netloc != "management.azure.com" or "api-version=" not in parts.query:
        raise _Fail("Bad Request", "InvalidRequest", f"unexpected url {url}")
    secret = VAULT_SECRET.match(parts.path)
    if secret:
        return _vault_secret(state, method, secret.group(1), secret.group(2), body)
    restart = SITE_RESTART.match(parts.path)
    if restart and method == "post" and restart.group(1) == state["site"]["name"]:
        state["site"]["restarts"] += 1
        return None
    match = SERVER_PATH.match(parts.path)
    if not match:
        raise _Fail("Not Found", "ResourceNotFound", f"no resource {parts.path}")
    if match.group(1) != state["server"]["id"]:
        raise _Fail("Not Found", "ResourceNotFound", f"no server {match.group(1)}")
    child = match.group(2).strip("/").split("/") if match.group(2).strip("/") else []
    _scripted_failure(state, method, match.group(2))
    if method == "get":
        return _get(state, child)
    if state.get("operation") is not None:
        raise _Fail("Conflict", "ServerBusy", "The server is busy processing another operation. Retry later.")
    return _change(state, method, child, body)


def _vault_secret(state: dict, method: str, vault: str, name: str, body: dict | None) -> object:
    """ARM's view of a secret: whether it exists and its attributes, never its value."""
    if vault != state["vault"]["name"]:
        raise _Fail("Not Found", "ResourceNotFound", f"no vault {vault}")
    secrets = state["vault"]["secrets"]
    if method == "get":
        if name not in secrets:
            raise _Fail("Not Found", "ResourceNotFound", f"secret {name} not found")
        return {"name": name, "properties": {"contentType": secrets[name]["contentType"]}}
    if method == "put":
        secrets[name] = {"value": body["properties"]["value"], "contentType": body["properties"].get("contentType")}
        return {"name": name, "properties": {"contentType": secrets[name]["contentType"]}}
    raise _Fail("Method Not Allowed", "MethodNotAllowed", method)


def _scripted_failure(state: dict, method: str, path: str) -> None:
    fail = state.get("fail")
    if fail and fail["method"] == method and fail["path_contains"] in path and fail["times"] > 0:
        fail["times"] -= 1
        raise _Fail(fail["phrase"], fail["code"], fail["message"])


def _get(state: dict, child: list[str]) -> object:
    server = state["server"]
    if not child:
        return {
            "id": server["id"],
            "properties": {
                "state": "Updating" if state.get("operation") else "Ready",
                "network": {"publicNetworkAccess": server["publicNetworkAccess"]},
            },
        }
    collection = state.get(child[0])
    if collection is None:
        raise _Fail("Not Found", "ResourceNotFound", f"unknown collection {child[0]}")
    if len(child) == 1:
        return {"value": [{"name": name, **item} for name, item in collection.items()]}
    if child[1] not in collection:
        raise _Fail("Not Found", "ResourceNotFound", f"{child[0]}/{child[1]} not found")
    return {"name": child[1], **collection[child[1]]}


def _change(state: dict, method: str, child: list[str], body: dict | None) -> None:
    operations = state["operation_calls"]
    if not child and method == "patch":
        value = body["properties"]["network"]["publicNetworkAccess"]
        state["operation"] = {"remaining": operations, "apply": {"kind": "network", "value": value}}
        return None
    if len(child) != 2 or child[0] not in ("administrators", "firewallRules"):
        raise _Fail("Bad Request", "InvalidRequest", f"cannot {method} {'/'.join(child)}")
    collection, name = child
    if method == "put":
        properties = dict(body["properties"])
        if collection == "administrators":
            properties["objectId"] = name
        state[collection][name] = {"properties": {**properties, "provisioningState": "InProgress"}}
        state["operation"] = {"remaining": operations, "apply": {"kind": "put", "collection": collection, "name": name}}
        return None
    if method == "delete":
        if name in state[collection]:
            state["operation"] = {
                "remaining": operations,
                "apply": {"kind": "delete", "collection": collection, "name": name},
            }
        return None
    raise _Fail("Method Not Allowed", "MethodNotAllowed", method)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
