"""Turn a webhook body into validated, normalised Hunter leads, or refuse it whole.

`parse_leads(body, content_type, now=...)` accepts one lead object or `{"leads": [...]}` (1..MAX_LEADS)
and returns the leads with only the fields of `LEAD_FIELDS`, normalised. Any problem anywhere refuses the
whole call with `IntakeError(status, problems)`: 415 wrong media type, 413 body too large, 400
everything else. Each `Problem` names a field path (`domain`, `leads[3].contact_emails[0]`, `body`)
and a short reason; reasons never carry a traceback and echo at most a truncated value.

Normalisation: strings are stripped and a blank string becomes null; a field that is absent stays
absent and an explicit null stays null (the push side may treat "clear" and "unchanged" apart);
host names are lower-case ASCII (IDNA) without a trailing dot; e-mail domains likewise; timestamps
are UTC ISO-8601; `referral_id` is a string.

`updated_at` is the lead's version, so a version more than MAX_FUTURE_SKEW ahead of `now` (the
server's clock at receipt) is refused: once stored, it would make every later, honest version look old.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from types import MappingProxyType
from typing import Any, Protocol

__all__ = [
    "IntakeError",
    "Problem",
    "LeadField",
    "LEAD_FIELDS",
    "MAX_BODY_BYTES",
    "MAX_LEADS",
    "MAX_DEPTH",
    "MAX_FUTURE_SKEW",
    "parse_leads",
]

MAX_BODY_BYTES = 1024 * 1024
MAX_LEADS = 500
MAX_DEPTH = 20
MAX_PROBLEMS = 50
MAX_INTEGER_DIGITS = 20
MAX_ECHO_CHARS = 40
SHORT_TEXT_MAX = 1_000
LONG_TEXT_MAX = 32_000
IDENTIFIER_MAX = 100
HOSTNAME_MAX = 253
EMAIL_MAX = 254
EMAIL_LOCAL_MAX = 64
MAX_EMAILS = 50
TIMESTAMP_MAX = 64
# Clocks drift by minutes; a day ahead is a bug or a forged version.
MAX_FUTURE_SKEW = timedelta(days=1)
# Exact in every JSON implementation (IEEE doubles), and fits a PostgreSQL bigint.
MAX_COMPANY_ID = 2**53 - 1

_MEDIA_TYPE = "application/json"
_UTF8 = {"utf-8", "utf8"}
# Strings (terminated or not) and brackets: enough to measure nesting without parsing.
_STRUCTURE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"?|[\[\]{}]', re.DOTALL)
# Control characters other than tab, LF, CR (NUL cannot even be stored in PostgreSQL text),
# and unpaired surrogates, which JSON escapes can produce but UTF-8 cannot encode.
_FORBIDDEN_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL_PART = re.compile(rf"{_ATEXT}(?:\.{_ATEXT})*")


@dataclass(frozen=True)
class Problem:
    field: str
    reason: str


class IntakeError(Exception):
    """A refused webhook call: an HTTP status and the problems that caused it."""

    def __init__(self, status: int, problems: Iterable[Problem]) -> None:
        self.status = status
        self.problems = tuple(problems)
        super().__init__(f"{status}: " + "; ".join(f"{p.field}: {p.reason}" for p in self.problems))

    @property
    def error(self) -> str:
        return HTTPStatus(self.status).phrase

    def response_body(self) -> dict[str, Any]:
        """The JSON problem body that openapi.yaml documents."""
        return {"error": self.error, "problems": [{"field": p.field, "reason": p.reason} for p in self.problems]}


class _Invalid(Exception):
    """One field's value is unacceptable; `suffix` narrows the path (e.g. a list index)."""

    def __init__(self, reason: str, suffix: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.suffix = suffix


class _BadDocument(ValueError):
    """Raised from json.loads hooks; json propagates it unchanged."""


# --- field validators: each takes the decoded JSON value (never None) and returns the normalised
# --- value or raises _Invalid; `schema()` is the OpenAPI schema it enforces (tests compare them).


@dataclass(frozen=True)
class Integer:
    minimum: int
    maximum: int

    def __call__(self, value: Any) -> int:
        if type(value) is not int:  # bool is an int subclass; floats are refused, even 3.0
            raise _Invalid(f"must be an integer, got {_json_type(value)}")
        if not self.minimum <= value <= self.maximum:
            raise _Invalid(f"must be between {self.minimum} and {self.maximum}")
        return value

    def schema(self) -> dict[str, Any]:
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


@dataclass(frozen=True)
class Text:
    max_length: int

    def __call__(self, value: Any) -> str | None:
        return _text(value, self.max_length)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": self.max_length}


@dataclass(frozen=True)
class Identifier:
    """A string or an integer, normalised to a string."""

    max_length: int

    def __call__(self, value: Any) -> str | None:
        if type(value) is int:
            return str(value)
        if not isinstance(value, str):
            raise _Invalid(f"must be a string or an integer, got {_json_type(value)}")
        return _text(value, self.max_length)

    def schema(self) -> dict[str, Any]:
        return {"oneOf": [{"type": "string", "maxLength": self.max_length}, {"type": "integer"}]}


@dataclass(frozen=True)
class HostName:
    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"must be a string, got {_json_type(value)}")
        if len(value) > HOSTNAME_MAX:
            raise _Invalid(f"must be at most {HOSTNAME_MAX} characters")
        return _host_name(value)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "hostname", "maxLength": HOSTNAME_MAX}


@dataclass(frozen=True)
class EmailList:
    max_items: int

    def __call__(self, value: Any) -> list[str]:
        if not isinstance(value, list):
            raise _Invalid(f"must be an array of e-mail addresses, got {_json_type(value)}")
        if len(value) > self.max_items:
            raise _Invalid(f"must hold at most {self.max_items} addresses")
        emails: dict[str, None] = {}  # ordered set: duplicates after normalisation are dropped
        for index, item in enumerate(value):
            try:
                emails[_email(item)] = None
            except _Invalid as exc:
                raise _Invalid(exc.reason, f"[{index}]") from None
        return list(emails)

    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "maxItems": self.max_items,
            "items": {"type": "string", "format": "email", "maxLength": EMAIL_MAX},
        }


@dataclass(frozen=True)
class Timestamp:
    def __call__(self, value: Any) -> str:
        if not isinstance(value, str):
            raise _Invalid(f"must be an ISO-8601 timestamp string, got {_json_type(value)}")
        if len(value) > TIMESTAMP_MAX:
            raise _Invalid(f"must be at most {TIMESTAMP_MAX} characters")
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise _Invalid("must be an ISO-8601 timestamp, e.g. 2026-11-26T10:00:00Z") from None
        if moment.utcoffset() is None:
            raise _Invalid("must include a UTC offset, e.g. Z or +03:00")
        try:
            return moment.astimezone(UTC).isoformat()
        except OverflowError:
            raise _Invalid("is out of range") from None

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "format": "date-time", "maxLength": TIMESTAMP_MAX}


class FieldValidator(Protocol):
    def __call__(self, value: Any) -> Any: ...

    def schema(self) -> dict[str, Any]: ...


@dataclass(frozen=True)
class LeadField:
    validate: FieldValidator
    required: bool = False


# The lead as Hunter sends it. Order is the order of the normalised lead's keys.
LEAD_FIELDS: Mapping[str, LeadField] = MappingProxyType(
    {
        "company_id": LeadField(Integer(1, MAX_COMPANY_ID), required=True),
        "domain": LeadField(HostName(), required=True),
        "canonical_name": LeadField(Text(SHORT_TEXT_MAX)),
        "readiness_score": LeadField(Integer(0, 100)),
        "m365_fit_score": LeadField(Integer(0, 100)),
        "priority_score": LeadField(Integer(0, 1000)),
        "segment": LeadField(Text(SHORT_TEXT_MAX)),
        "provider": LeadField(Text(SHORT_TEXT_MAX)),
        "tenant_size": LeadField(Text(SHORT_TEXT_MAX)),
        "contact_emails": LeadField(EmailList(MAX_EMAILS)),
        "infrastructure_summary": LeadField(Text(LONG_TEXT_MAX)),
        "source": LeadField(Text(SHORT_TEXT_MAX)),
        "processing_status": LeadField(Text(SHORT_TEXT_MAX)),
        "referral_id": LeadField(Identifier(IDENTIFIER_MAX)),
        "referral_type": LeadField(Text(SHORT_TEXT_MAX)),
        "priority_category": LeadField(Text(SHORT_TEXT_MAX)),
        "priority_label": LeadField(Text(SHORT_TEXT_MAX)),
        "technical_heat": LeadField(Text(SHORT_TEXT_MAX)),
        "commercial_segment": LeadField(Text(SHORT_TEXT_MAX)),
        "commercial_heat": LeadField(Text(SHORT_TEXT_MAX)),
        "updated_at": LeadField(Timestamp()),
    }
)


def parse_leads(body: bytes, content_type: str | None, *, now: datetime) -> list[dict[str, Any]]:
    """Validate and normalise the leads in a webhook body received at `now` (timezone-aware).

    Raises IntakeError: 415 if the content type is not application/json (utf-8), 413 if the body
    exceeds MAX_BODY_BYTES, 400 for anything else wrong (encoding, JSON, nesting, batch size, any
    field of any lead, an `updated_at` more than MAX_FUTURE_SKEW after `now`). Nothing is returned
    unless every lead is valid.
    """
    latest_version = now.astimezone(UTC) + MAX_FUTURE_SKEW
    _check_content_type(content_type)
    if len(body) > MAX_BODY_BYTES:
        raise IntakeError(413, [Problem("body", f"must be at most {MAX_BODY_BYTES} bytes")])
    document = _load_json(body)
    if not isinstance(document, dict):
        raise IntakeError(400, [Problem("body", f"must be a JSON object, got {_json_type(document)}")])
    batch = "leads" in document
    items = _batch_items(document["leads"]) if batch else [document]
    leads: list[dict[str, Any]] = []
    problems: list[Problem] = []
    for index, item in enumerate(items):
        prefix = f"leads[{index}]" if batch else ""
        if not isinstance(item, dict):
            problems.append(Problem(prefix, f"must be a lead object, got {_json_type(item)}"))
            continue
        leads.append(_validate_lead(item, prefix, problems, latest_version))
    if problems:
        raise IntakeError(400, _capped(problems))
    return leads


def _check_content_type(content_type: str | None) -> None:
    media_type, _, parameters = (content_type or "").partition(";")
    if media_type.strip().lower() != _MEDIA_TYPE:
        raise IntakeError(415, [Problem("Content-Type", f"must be {_MEDIA_TYPE}")])
    for parameter in parameters.split(";"):
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() not in _UTF8:
            raise IntakeError(415, [Problem("Content-Type", "charset must be utf-8")])


def _load_json(body: bytes) -> Any:
    if not body.strip():
        raise IntakeError(400, [Problem("body", "is empty")])
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IntakeError(400, [Problem("body", f"is not valid UTF-8 (at byte {exc.start})")]) from None
    _check_depth(text)
    try:
        return json.loads(
            text,
            parse_constant=_refuse_constant,
            parse_int=_parse_int,
            object_pairs_hook=_unique_keys,
        )
    except json.JSONDecodeError as exc:
        reason = f"is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        raise IntakeError(400, [Problem("body", reason)]) from None
    except _BadDocument as exc:
        raise IntakeError(400, [Problem("body", str(exc))]) from None


def _check_depth(text: str) -> None:
    """Refuse deep nesting before json.loads, whose C scanner recurses once per level."""
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
            if depth > MAX_DEPTH:
                raise IntakeError(400, [Problem("body", f"must not nest deeper than {MAX_DEPTH} levels")])
        elif token == "]" or token == "}":
            depth -= 1


def _refuse_constant(name: str) -> Any:
    raise _BadDocument(f"is not valid JSON: {name} is not a number")


def _parse_int(literal: str) -> int:
    # Bounded before int() so a huge literal costs nothing and never hits Python's digit limit.
    if len(literal.lstrip("-")) > MAX_INTEGER_DIGITS:
        raise _BadDocument(f"holds an integer longer than {MAX_INTEGER_DIGITS} digits")
    return int(literal)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may disagree on which duplicate wins; refusing them leaves nothing to disagree on.
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _BadDocument(f"has a duplicate key {_echo(key)}")
        document[key] = value
    return document


def _batch_items(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise IntakeError(400, [Problem("leads", f"must be an array of leads, got {_json_type(value)}")])
    if not 1 <= len(value) <= MAX_LEADS:
        raise IntakeError(400, [Problem("leads", f"must hold 1 to {MAX_LEADS} leads, got {len(value)}")])
    return value


def _validate_lead(
    item: Mapping[str, Any], prefix: str, problems: list[Problem], latest_version: datetime
) -> dict[str, Any]:
    lead: dict[str, Any] = {}
    for name, spec in LEAD_FIELDS.items():
        path = f"{prefix}.{name}" if prefix else name
        if name not in item:
            if spec.required:
                problems.append(Problem(path, "is required"))
            continue
        value = item[name]
        try:
            normalised = None if value is None else spec.validate(value)
        except _Invalid as exc:
            problems.append(Problem(path + exc.suffix, exc.reason))
            continue
        if normalised is None and spec.required:
            problems.append(Problem(path, "must not be null or blank"))
            continue
        lead[name] = normalised
    version = lead.get("updated_at")
    if version is not None and datetime.fromisoformat(version) > latest_version:
        path = f"{prefix}.updated_at" if prefix else "updated_at"
        hours = MAX_FUTURE_SKEW // timedelta(hours=1)
        problems.append(Problem(path, f"must not be more than {hours} hours ahead of the server's clock"))
    return lead


def _capped(problems: list[Problem]) -> list[Problem]:
    if len(problems) <= MAX_PROBLEMS:
        return problems
    hidden = len(problems) - MAX_PROBLEMS
    return [*problems[:MAX_PROBLEMS], Problem("body", f"{hidden} more problems not shown")]


def _text(value: Any, max_length: int) -> str | None:
    if not isinstance(value, str):
        raise _Invalid(f"must be a string, got {_json_type(value)}")
    if len(value) > max_length:
        raise _Invalid(f"must be at most {max_length} characters")
    if _FORBIDDEN_CHARS.search(value):
        raise _Invalid("must not contain control characters or unpaired surrogates")
    return value.strip() or None


def _host_name(value: str) -> str:
    name = value.strip().lower()
    if not name:
        raise _Invalid("must not be blank")
    if "://" in name:
        raise _Invalid("must be a bare host name, not a URL")
    if "@" in name:
        raise _Invalid("must not contain credentials or '@'")
    if any(char in name for char in "/?#\\"):
        raise _Invalid("must not contain a path, query or fragment")
    if ":" in name:
        raise _Invalid(f"must not contain a port: {_echo(name)}")
    if any(char.isspace() for char in name):
        raise _Invalid("must not contain spaces")
    if _FORBIDDEN_CHARS.search(name):
        raise _Invalid("must not contain control characters or unpaired surrogates")
    name = name.removesuffix(".")
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise _Invalid(f"is not a valid (internationalised) host name: {_echo(name)}") from None
    if len(ascii_name) > HOSTNAME_MAX:
        raise _Invalid(f"must be at most {HOSTNAME_MAX} characters in ASCII form")
    labels = ascii_name.split(".")
    if len(labels) < 2:
        raise _Invalid(f"must have at least two labels, e.g. example.com: {_echo(name)}")
    if not all(_LABEL.fullmatch(label) for label in labels):
        raise _Invalid(f"labels must be 1-63 letters, digits or inner hyphens: {_echo(ascii_name)}")
    if labels[-1].isdigit():
        raise _Invalid("must be a host name, not an IP address")
    return ascii_name


def _email(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"must be an e-mail address string, got {_json_type(value)}")
    if len(value) > EMAIL_MAX:
        raise _Invalid(f"must be at most {EMAIL_MAX} characters")
    address = value.strip()
    if address.count("@") != 1:
        raise _Invalid("must be an e-mail address with exactly one '@'")
    local, domain = address.split("@")
    if len(local) > EMAIL_LOCAL_MAX or not _LOCAL_PART.fullmatch(local):
        raise _Invalid(
            f"must have a local part of 1-{EMAIL_LOCAL_MAX} ASCII letters, digits, "
            "!#$%&'*+/=?^_`{|}~- and single inner dots"
        )
    try:
        ascii_domain = _host_name(domain)
    except _Invalid as exc:
        raise _Invalid(f"domain part {exc.reason}") from None
    normalised = f"{local}@{ascii_domain}"
    if len(normalised) > EMAIL_MAX:
        raise _Invalid(f"must be at most {EMAIL_MAX} characters in ASCII form")
    return normalised


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _echo(value: str) -> str:
    """A value quoted for a reason, cut short: refusals never send back a large input."""
    quoted = repr(value)
    return quoted if len(quoted) <= MAX_ECHO_CHARS else quoted[:MAX_ECHO_CHARS] + "..."
