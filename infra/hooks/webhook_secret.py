"""The Hunter webhook secret: created in Key Vault once, through ARM, never replaced by a provision.

Through ARM (the control plane) because the vault's data plane is private with vnetEnabled, and because azd's
own `$(secretOrRandomPassword ...)` reads that data plane on every provision: it generates a new secret only
when the read answers 404, and any other answer (a private vault's 403, say) stops the provision. ARM says
whether the secret exists without revealing it, and writes it from a file, so the value never appears on a
command line or in the hook's output. The app then restarts, so its Key Vault reference resolves at once.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from azcli import Az, AzError

KEY_VAULT_API = "2023-07-01"
WEB_API = "2024-04-01"
SECRET_NAME = "hunter-webhook-secret"
SECRET_BYTES = 32


def ensure_webhook_secret(
    az: Az, vault_id: str, site_id: str, *, new_secret: Callable[[int], str] = secrets.token_urlsafe
) -> bool:
    """Create the secret unless it exists; True when created now. Raises AzError."""
    path = f"{vault_id}/secrets/{SECRET_NAME}"
    try:
        az.arm("get", path, KEY_VAULT_API, busy_retry=False)
        return False
    except AzError as exc:
        if not exc.not_found:
            raise
    body = {"properties": {"value": new_secret(SECRET_BYTES), "contentType": "text/plain"}}
    az.arm("put", path, KEY_VAULT_API, body, busy_retry=False)
    az.arm("post", f"{site_id}/restart", WEB_API)
    return True
