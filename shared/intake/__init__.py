"""The webhook's pure intake layer: body validation and Hunter's signature headers. No I/O."""

from __future__ import annotations

from shared.intake.signature import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    DeliveryConflict,
    SignatureError,
    body_digest,
    delivery_id,
    sign,
    verify_signature,
)
from shared.intake.validation import (
    LEAD_FIELDS,
    MAX_BODY_BYTES,
    MAX_DEPTH,
    MAX_FUTURE_SKEW,
    MAX_LEADS,
    IntakeError,
    LeadField,
    Problem,
    parse_leads,
)

__all__ = [
    "DELIVERY_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DeliveryConflict",
    "SignatureError",
    "body_digest",
    "delivery_id",
    "sign",
    "verify_signature",
    "LEAD_FIELDS",
    "MAX_BODY_BYTES",
    "MAX_DEPTH",
    "MAX_FUTURE_SKEW",
    "MAX_LEADS",
    "IntakeError",
    "LeadField",
    "Problem",
    "parse_leads",
]
