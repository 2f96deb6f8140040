"""JWT-shaped HS256 tokens shared by the local emulators.

The identity and authority emulators mint them; the Dataverse emulator verifies them. The key comes
from `EMULATOR_TOKEN_KEY` so separate processes agree without any setup.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid

DEV_TOKEN_KEY = "lead-push-local-emulator-dev-key"
# Entra's v1 issuer, as in the tokens managed identities get: Azurite's `--oauth basic` accepts only
# Entra issuers (https://sts.windows.net/...). The tenant is made up.
LOCAL_TENANT_ID = "7e1a0000-0000-4000-8000-00000000a7e1"
ISSUER = f"https://sts.windows.net/{LOCAL_TENANT_ID}/"
_HEADER = {"alg": "HS256", "typ": "JWT"}


class TokenError(Exception):
    """A token is malformed, has a bad signature, the wrong audience, or has expired."""


def _key() -> bytes:
    return os.environ.get("EMULATOR_TOKEN_KEY", DEV_TOKEN_KEY).encode()


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(signing_input: str) -> str:
    return _b64encode(hmac.new(_key(), signing_input.encode("ascii"), hashlib.sha256).digest())


def mint(audience: str, *, subject: str, app_id: str, ttl_seconds: int) -> tuple[str, int]:
    """Return `(token, expires_on)` for `audience`; `expires_on` is epoch seconds."""
    now = int(time.time())
    expires_on = now + ttl_seconds
    claims = {
        "aud": audience,
        "iss": ISSUER,
        "sub": subject,
        "appid": app_id,
        "oid": subject,
        "tid": LOCAL_TENANT_ID,
        "iat": now,
        "nbf": now,
        "exp": expires_on,
        "jti": uuid.uuid4().hex,
    }
    signing_input = ".".join(
        _b64encode(json.dumps(part, separators=(",", ":")).encode()) for part in (_HEADER, claims)
    )
    return f"{signing_input}.{_sign(signing_input)}", expires_on


def verify(token: str, audience: str) -> dict:
    """Return the claims of `token`.

    Raises TokenError if it is malformed, its signature is wrong, its audience is not `audience`
    (a trailing slash is ignored on both sides) or it has expired.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenError("token is not a JWT (expected three dot-separated parts)")
    signing_input = f"{parts[0]}.{parts[1]}"
    if not hmac.compare_digest(_sign(signing_input), parts[2]):
        raise TokenError("token signature is invalid")
    try:
        claims = json.loads(_b64decode(parts[1]))
    except ValueError as exc:
        raise TokenError("token payload is not base64url JSON") from exc
    if not isinstance(claims, dict):
        raise TokenError("token payload is not a JSON object")
    if str(claims.get("aud", "")).rstrip("/") != audience.rstrip("/"):
        raise TokenError(f"token audience {claims.get('aud')!r} is not {audience!r}")
    if not isinstance(claims.get("exp"), int) or claims["exp"] <= time.time():
        raise TokenError("token has expired")
    return claims
