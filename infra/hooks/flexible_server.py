"""The Azure Database for PostgreSQL Flexible Server, as the hook changes it through ARM.

Each change is requested, then waited for: the administrator or firewall rule is listed with
`provisioningState` Succeeded (when the API reports one) and the server is `Ready` again, so the next change
does not meet `ServerBusy`. Every change first looks whether it is needed, so a rerun changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from azcli import Az, AzError

API_VERSION = "2024-08-01"
READY = "Ready"
SUCCEEDED = "Succeeded"


@dataclass(frozen=True)
class Principal:
    """A Microsoft Entra principal: object id, display name (the PostgreSQL role name) and ARM principal type."""

    object_id: str
    name: str
    type: str  # "User" or "ServicePrincipal"


class FlexibleServer:
    def __init__(self, az: Az, server_id: str) -> None:
        self._az = az
        self.id = server_id

    def _get(self, path: str = "") -> Any:
        """The resource, or None when it does not exist."""
        try:
            return self._az.arm("get", f"{self.id}{path}", API_VERSION)
        except AzError as exc:
            if exc.not_found:
                return None
            raise

    def ready(self) -> bool:
        server = self._get() or {}
        return server.get("properties", {}).get("state") == READY

    def public_network_access(self) -> str:
        server = self._get() or {}
        return server.get("properties", {}).get("network", {}).get("publicNetworkAccess", "Enabled")

    def _done(self, path: str) -> bool:
        """The child resource exists, has finished provisioning, and the server is ready for the next change."""
        child = self._get(path)
        if child is None:
            return False
        return child.get("properties", {}).get("provisioningState", SUCCEEDED) == SUCCEEDED and self.ready()

    def _gone(self, path: str) -> bool:
        return self._get(path) is None and self.ready()

    # --- Microsoft Entra administrators ------------------------------------------------------

    def administrator_ids(self) -> set[str]:
        listing = self._get("/administrators") or {}
        return {item.get("properties", {}).get("objectId") or item.get("name") for item in listing.get("value", [])}

    def ensure_administrator(self, principal: Principal, *, tenant_id: str) -> bool:
        """Make `principal` an Entra administrator and wait until it is one. True when it was added now."""
        path = f"/administrators/{principal.object_id}"
        added = principal.object_id not in self.administrator_ids()
        if added:
            body = {
                "properties": {"principalType": principal.type, "principalName": principal.name, "tenantId": tenant_id}
            }
            self._az.arm("put", f"{self.id}{path}", API_VERSION, body)
        self._az.wait_until(f"administrator {principal.name}", lambda: self._done(path))
        return added

    def remove_administrator(self, object_id: str) -> bool:
        """Take `object_id` off the administrators (an earlier release made the app's identity one). True when
        it was one."""
        if object_id not in self.administrator_ids():
            return False
        path = f"/administrators/{object_id}"
        self._az.arm("delete", f"{self.id}{path}", API_VERSION)
        self._az.wait_until(f"removing administrator {object_id}", lambda: self._gone(path))
        return True

    # --- network -----------------------------------------------------------------------------

    def open_firewall(self, rule: str, address: str) -> None:
        path = f"/firewallRules/{rule}"
        current = self._get(path)
        wanted = {"startIpAddress": address, "endIpAddress": address}
        if current is None or {k: current.get("properties", {}).get(k) for k in wanted} != wanted:
            self._az.arm("put", f"{self.id}{path}", API_VERSION, {"properties": wanted})
        self._az.wait_until(f"firewall rule {rule}", lambda: self._done(path))

    def close_firewall(self, rule: str) -> None:
        path = f"/firewallRules/{rule}"
        if self._get(path) is None:
            return
        try:
            self._az.arm("delete", f"{self.id}{path}", API_VERSION)
        except AzError as exc:
            if not exc.not_found:
                raise
        self._az.wait_until(f"removing firewall rule {rule}", lambda: self._gone(path))

    def set_public_network_access(self, value: str) -> bool:
        """`Enabled` or `Disabled`; True when it changed."""
        if self.public_network_access() == value:
            return False
        self._az.arm("patch", self.id, API_VERSION, {"properties": {"network": {"publicNetworkAccess": value}}})
        self._az.wait_until(
            f"public network access {value}", lambda: self.public_network_access() == value and self.ready()
        )
        return True
