"""The queue message: one validated Hunter lead, with where and when it came in.

On the wire it is small JSON, base64-encoded as the Functions queue trigger expects:
`{"v": 1, "lead": {...}, "correlation_id": "...", "received_at": "<ISO 8601>"}`. The trigger reads
the raw text (host.json `messageEncoding: none`) and decodes it here, so that a message someone
else put on the queue reaches our code and goes to the poison queue at once, with its reason.
"""
from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Mapping

FORMAT_VERSION = 1


class MalformedMessage(ValueError):
    """The message can never be processed; `company_id` is set when it could still be read."""

    def __init__(self, reason: str, *, company_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.company_id = company_id


@dataclass(frozen=True)
class LeadMessage:
    lead: Mapping[str, Any]
    correlation_id: str
    received_at: datetime

    @property
    def company_id(self) -> int:
        return self.lead["company_id"]

    @property
    def version(self) -> datetime:
        """What orders two messages for one lead: Hunter's `updated_at`, else our receipt time."""
        updated_at = self.lead.get("updated_at")
        return _parse_time(updated_at) if updated_at else self.received_at

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": FORMAT_VERSION,
                "lead": dict(self.lead),
                "correlation_id": self.correlation_id,
                "received_at": self.received_at.isoformat(),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def to_wire(self) -> str:
        return base64.b64encode(self.to_json().encode("utf-8")).decode("ascii")

    @classmethod
    def from_wire(cls, raw: bytes) -> "LeadMessage":
        """Raises MalformedMessage when `raw` is not a base64-encoded lead message of ours."""
        try:
            text = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise MalformedMessage("message is not base64-encoded UTF-8 text") from exc
        return cls.from_json(text)

    @classmethod
    def from_json(cls, text: str) -> "LeadMessage":
        """Raises MalformedMessage when `text` is not a lead message of ours."""
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MalformedMessage(f"message is not JSON: {exc}") from exc
        return cls.from_data(data)

    @classmethod
    def from_data(cls, data: Any) -> "LeadMessage":
        """Raises MalformedMessage when `data` (parsed JSON) is not a lead message of ours."""
        if not isinstance(data, dict):
            raise MalformedMessage("message is not a JSON object")
        lead = data.get("lead")
        company_id = lead.get("company_id") if isinstance(lead, dict) else None
        if not isinstance(company_id, int) or isinstance(company_id, bool) or company_id <= 0:
            raise MalformedMessage("message has no lead with a positive integer company_id")
        if data.get("v") != FORMAT_VERSION:
            raise MalformedMessage(f"unknown message format version {data.get('v')!r}", company_id=company_id)
        if not isinstance(lead.get("domain"), str) or not lead["domain"]:
            raise MalformedMessage("lead has no domain", company_id=company_id)
        try:
            received_at = _parse_time(data["received_at"])
            if lead.get("updated_at"):
                _parse_time(lead["updated_at"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedMessage(f"bad timestamp in message: {exc}", company_id=company_id) from exc
        return cls(lead=lead, correlation_id=str(data.get("correlation_id") or ""), received_at=received_at)


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
