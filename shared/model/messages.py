"""The lead as accepted at the webhook, and the queue message that says it is due.

`LeadMessage` is one validated Hunter lead with where and when it came in; its JSON
(`{"v": 1, "lead": {...}, "correlation_id", "received_at"}`) is what PostgreSQL keeps as the lead's
newest version. The queue carries only a reference to it, `LeadRef`:
`{"v": 2, "company_id", "version", "correlation_id", "traceparent"}`, base64-encoded as the Functions
queue trigger expects. A reference is a few hundred bytes whatever the lead holds, so every lead the
webhook accepts fits a queue message (64 KiB), and a push always writes the newest version stored,
not the one that happened to be in the message. A v1 message (the whole lead, as sent before) is
still read: its lead is recorded as if it came through the webhook.

The trigger reads the raw text (host.json `messageEncoding: none`) and decodes it here, so a message
someone else put on the queue reaches our code and goes to the poison queue at once, with its reason.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

LEAD_FORMAT = 1
REF_FORMAT = 2


class MalformedMessage(ValueError):
    """The message can never be processed; `company_id` is set when it could still be read."""

    def __init__(self, reason: str, *, company_id: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.company_id = company_id


@dataclass(frozen=True)
class LeadRef:
    """A queue message: this company's lead, at this version or newer, is due in Dataverse."""

    company_id: int
    version: datetime
    correlation_id: str
    traceparent: str | None = None
    # Set when the message was a v1 message carrying the whole lead.
    accepted: LeadMessage | None = None
    # How many times this message was sent again because PostgreSQL could not be reached: its
    # next wait is longer (capped), and no delivery is used up by an outage.
    outage_waits: int = 0

    def to_wire(self) -> str:
        data: dict[str, Any] = {
            "v": REF_FORMAT,
            "company_id": self.company_id,
            "version": self.version.isoformat(),
            "correlation_id": self.correlation_id,
        }
        if self.traceparent:
            data["traceparent"] = self.traceparent
        if self.outage_waits:
            data["waits"] = self.outage_waits
        return base64.b64encode(json.dumps(data, separators=(",", ":")).encode("utf-8")).decode("ascii")

    @classmethod
    def from_wire(cls, raw: bytes) -> LeadRef:
        """Raises MalformedMessage when `raw` is not a base64-encoded message of ours (v1 or v2)."""
        try:
            text = base64.b64decode(raw, validate=True).decode("utf-8")
        except (binascii.Error, ValueError) as exc:
            raise MalformedMessage("message is not base64-encoded UTF-8 text") from exc
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise MalformedMessage(f"message is not JSON: {exc}") from exc
        if isinstance(data, dict) and data.get("v") == REF_FORMAT:
            return cls._from_ref(data)
        return LeadMessage.from_data(data).ref()

    @classmethod
    def _from_ref(cls, data: dict) -> LeadRef:
        company_id = data.get("company_id")
        if not isinstance(company_id, int) or not _is_company_id(company_id):
            raise MalformedMessage("message has no positive integer company_id")
        traceparent = data.get("traceparent")
        waits = data.get("waits", 0)
        try:
            version = _parse_time(data["version"])
        except (KeyError, TypeError, ValueError) as exc:
            raise MalformedMessage(f"bad version in message: {exc}", company_id=company_id) from exc
        return cls(
            company_id=company_id,
            version=version,
            correlation_id=str(data.get("correlation_id") or ""),
            traceparent=traceparent if isinstance(traceparent, str) else None,
            outage_waits=waits if isinstance(waits, int) and waits > 0 else 0,
        )


@dataclass(frozen=True)
class LeadMessage:
    lead: Mapping[str, Any]
    correlation_id: str
    received_at: datetime
    traceparent: str | None = None

    @property
    def company_id(self) -> int:
        return self.lead["company_id"]

    @property
    def version(self) -> datetime:
        """What orders two versions of one lead: Hunter's `updated_at`, else our receipt time."""
        updated_at = self.lead.get("updated_at")
        return _parse_time(updated_at) if updated_at else self.received_at

    def ref(self) -> LeadRef:
        return LeadRef(
            company_id=self.company_id,
            version=self.version,
            correlation_id=self.correlation_id,
            traceparent=self.traceparent,
            accepted=self,
        )

    def to_json(self) -> str:
        """The stored form, kept in PostgreSQL as the lead's newest version."""
        return json.dumps(
            {
                "v": LEAD_FORMAT,
                "lead": dict(self.lead),
                "correlation_id": self.correlation_id,
                "received_at": self.received_at.isoformat(),
            },
            separators=(",", ":"),
            ensure_ascii=False,
        )

    def to_wire(self) -> str:
        """The queue message for this lead: a reference, never the lead itself."""
        return self.ref().to_wire()

    @classmethod
    def from_data(cls, data: Any) -> LeadMessage:
        """Raises MalformedMessage when `data` (parsed JSON) is not a stored lead of ours."""
        if not isinstance(data, dict):
            raise MalformedMessage("message is not a JSON object")
        lead = data.get("lead")
        company_id = lead.get("company_id") if isinstance(lead, dict) else None
        if not _is_company_id(company_id):
            raise MalformedMessage("message has no lead with a positive integer company_id")
        assert isinstance(lead, dict)
        if data.get("v") != LEAD_FORMAT:
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


def _is_company_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _parse_time(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
