"""The webhook's authentication headers: Hunter's HMAC signature, its timestamp, the delivery id.

    X-Hunter-Signature: sha256=<hex HMAC-SHA256 of the signed content, keyed with the shared secret>
    X-Hunter-Timestamp: <unix seconds>   optional; when sent, the signed content is
                                         b"<timestamp>." + body and stale calls are refused
    X-Hunter-Delivery:  <delivery id>    optional; the same id on a re-delivery, which must repeat
                                         the first delivery's body byte for byte (else 409)

Header lookups are case-insensitive, so a plain dict works as well as the Functions headers.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping

from shared.intake.validation import IntakeError, Problem

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DELIVERY_HEADER",
    "SignatureError",
    "DeliveryConflict",
    "verify_signature",
    "sign",
    "delivery_id",
    "body_digest",
]

SIGNATURE_HEADER = "X-Hunter-Signature"
TIMESTAMP_HEADER = "X-Hunter-Timestamp"
DELIVERY_HEADER = "X-Hunter-Delivery"
MAX_DELIVERY_ID_CHARS = 128

_SCHEME = "sha256="
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]+")


class SignatureError(IntakeError):
    """The call is not provably from Hunter (401); `reason` says why, without any secret."""

    def __init__(self, reason: str, *, header: str = SIGNATURE_HEADER) -> None:
        self.reason = reason
        super().__init__(401, [Problem(header, reason)])


class DeliveryConflict(IntakeError):
    """A delivery id reused with a different body (409).

    Replaying the first delivery's answer would tell Hunter that this body's leads were queued.
    """

    def __init__(self) -> None:
        reason = (
            "was already used by a delivery with a different body; a re-delivery must repeat the first "
            "body byte for byte, and new content needs a new delivery id"
        )
        super().__init__(409, [Problem(DELIVERY_HEADER, reason)])


def verify_signature(
    body: bytes,
    headers: Mapping[str, str],
    *,
    secret: str,
    tolerance_seconds: int,
    now: float,
) -> None:
    """Check that `body` was signed with `secret`, and recently if a timestamp was sent.

    Raises SignatureError if the signature header is missing, malformed or wrong, or the timestamp
    is malformed or more than `tolerance_seconds` away from `now`. Raises ValueError for an empty
    secret (anyone could sign with it).
    """
    if not secret:
        raise ValueError("the webhook secret must not be empty")
    presented = _header(headers, SIGNATURE_HEADER)
    if presented is None:
        raise SignatureError("is missing")
    presented = presented.strip()
    digest = presented.removeprefix(_SCHEME).lower()
    if not presented.startswith(_SCHEME) or not _HEX_DIGEST.fullmatch(digest):
        raise SignatureError("must be sha256=<64 hex digits>")
    timestamp = _header(headers, TIMESTAMP_HEADER)
    if timestamp is not None:
        timestamp = timestamp.strip()
        if not _UNIX_SECONDS.fullmatch(timestamp):
            raise SignatureError("must be unix seconds", header=TIMESTAMP_HEADER)
    expected = _digest(_signed_content(body, timestamp), secret)
    if not hmac.compare_digest(digest.encode("ascii"), expected.encode("ascii")):
        raise SignatureError("does not match the body")
    # Checked after the signature, so only an authentic caller learns about the clock.
    if timestamp is not None:
        age = now - int(timestamp)
        if age > tolerance_seconds:
            raise SignatureError(f"is older than {tolerance_seconds} seconds", header=TIMESTAMP_HEADER)
        if -age > tolerance_seconds:
            raise SignatureError(f"is more than {tolerance_seconds} seconds in the future", header=TIMESTAMP_HEADER)


def sign(body: bytes, secret: str, timestamp: int | None = None) -> dict[str, str]:
    """The headers Hunter would send with `body`: the signature, and the timestamp if given."""
    stamp = None if timestamp is None else str(timestamp)
    headers = {SIGNATURE_HEADER: _SCHEME + _digest(_signed_content(body, stamp), secret)}
    if stamp is not None:
        headers[TIMESTAMP_HEADER] = stamp
    return headers


def delivery_id(headers: Mapping[str, str]) -> str | None:
    """The X-Hunter-Delivery id, stripped, or None when absent.

    Raises IntakeError (400) unless it is 1..128 printable ASCII characters.
    """
    value = _header(headers, DELIVERY_HEADER)
    if value is None:
        return None
    value = value.strip()
    if len(value) > MAX_DELIVERY_ID_CHARS or not _PRINTABLE_ASCII.fullmatch(value):
        reason = f"must be 1 to {MAX_DELIVERY_ID_CHARS} printable ASCII characters"
        raise IntakeError(400, [Problem(DELIVERY_HEADER, reason)])
    return value


def body_digest(body: bytes) -> str:
    """The hex SHA-256 of a raw body: what tells a true re-delivery from a reused delivery id."""
    return hashlib.sha256(body).hexdigest()


def _signed_content(body: bytes, timestamp: str | None) -> bytes:
    return body if timestamp is None else f"{timestamp}.".encode("ascii") + body


def _digest(content: bytes, secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), content, hashlib.sha256).hexdigest()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None
