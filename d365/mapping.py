"""Hunter lead -> Dataverse `lead` payload: one declarative table and a pure function over it.

The organisation's metadata (`LeadSchema`) is an input: a column it lacks is not sent, a value is
converted by the column's type as the org defines it, and a choice is sent as the integer the org
gives its label. No choice integer is written down here.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from d365.metadata import Column, LeadSchema

ChoiceOverrides = Mapping[str, Mapping[str, "int | str"]]
"""column -> {Hunter label (any case) -> option value, or the Dataverse label to use}."""

TEXT_TYPES = frozenset({"String", "Memo"})
WHOLE_NUMBER_TYPES = frozenset({"Integer", "BigInt"})
DECIMAL_TYPES = frozenset({"Decimal", "Double", "Money"})
CHOICE_TYPES = frozenset({"Picklist"})


@dataclass(frozen=True)
class FieldRule:
    column: str
    source: str  # the Hunter field(s) it reads, for people
    derive: Callable[[Mapping[str, Any]], Any]
    note: str
    expected_type: str  # as a Dynamics admin creates the column
    known_values: tuple[str, ...] = ()  # for choices: the labels Hunter is known to send
    required: bool = False  # the push cannot work without this column


@dataclass(frozen=True)
class MappingWarning:
    column: str
    reason: str


@dataclass(frozen=True)
class MappedLead:
    payload: dict[str, Any]
    warnings: tuple[MappingWarning, ...]
    missing_columns: tuple[str, ...]


class ChoiceOverridesError(ValueError):
    """The choice overrides file is unreadable or malformed; the message says where."""


def _field(name: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda lead: lead.get(name)


def _with_domain(template: str) -> Callable[[Mapping[str, Any]], Any]:
    return lambda lead: template.format(lead["domain"]) if lead.get("domain") else None


def _first_email(lead: Mapping[str, Any]) -> Any:
    emails = lead.get("contact_emails")
    return emails[0] if isinstance(emails, (list, tuple)) and emails else None


def _referral_id_text(lead: Mapping[str, Any]) -> Any:
    value = lead.get("referral_id")
    return None if value is None else str(value)


def _has_referral(lead: Mapping[str, Any]) -> bool:
    return lead.get("referral_id") not in (None, "")


TEXT = "Single line of text"
MEMO = "Multiple lines of text"
WHOLE = "Whole number"
CHOICE = "Choice"
YES_NO = "Yes/No"
_HEAT = ("Hot", "Warm", "Cold")

# A table: one rule per row reads better than one argument per line.
# fmt: off
FIELD_RULES: tuple[FieldRule, ...] = (
    FieldRule("subject", "domain", _with_domain("Hunter: {}"), "`Hunter: <domain>`", TEXT, required=True),
    FieldRule("companyname", "canonical_name", _field("canonical_name"), "as is", TEXT, required=True),
    FieldRule("websiteurl", "domain", _with_domain("https://{}"), "`https://<domain>`", TEXT, required=True),
    FieldRule("emailaddress1", "contact_emails", _first_email, "the first address", TEXT, required=True),
    FieldRule("hnt_companyid", "company_id", _field("company_id"), "as is", WHOLE),
    FieldRule("hnt_domain", "domain", _field("domain"), "as is", TEXT),
    FieldRule("hnt_finalscore", "readiness_score", _field("readiness_score"), "as is", WHOLE),
    FieldRule("hnt_m365fitscore", "m365_fit_score", _field("m365_fit_score"), "as is", WHOLE),
    FieldRule("hnt_priorityscore", "priority_score", _field("priority_score"), "as is", WHOLE),
    FieldRule("hnt_provider", "provider", _field("provider"), "as is", TEXT),
    FieldRule("hnt_infrasummary", "infrastructure_summary", _field("infrastructure_summary"), "as is", MEMO),
    FieldRule("hnt_referralid", "referral_id", _referral_id_text, "as text", TEXT),
    FieldRule(
        "hnt_segment", "segment", _field("segment"), "label -> option value", CHOICE,
        known_values=("Existing", "New", "Prospect", "Partner"),
    ),
    FieldRule(
        "hnt_huntertenantsize", "tenant_size", _field("tenant_size"), "label -> option value", CHOICE,
        known_values=("small", "medium", "large", "enterprise"),
    ),
    FieldRule(
        "hnt_source", "source", _field("source"), "label -> option value", CHOICE,
        known_values=("Manual", "Import", "API", "Crawler"),
    ),
    FieldRule(
        "hnt_processingstatus", "processing_status", _field("processing_status"), "label -> option value", CHOICE,
        known_values=("Idle", "Queued", "Processing", "Completed", "Failed"),
    ),
    FieldRule(
        "hnt_referraltype", "referral_type", _field("referral_type"), "label -> option value", CHOICE,
        known_values=("Partner Center", "Customer", "Internal"),
    ),
    FieldRule(
        "hnt_prioritycategory", "priority_category", _field("priority_category"),
        "label -> option value (post-MVP)", CHOICE, known_values=("High", "Medium", "Low"),
    ),
    FieldRule("hnt_prioritylabel", "priority_label", _field("priority_label"), "as is (post-MVP)", TEXT),
    FieldRule(
        "hnt_technicalheat", "technical_heat", _field("technical_heat"),
        "label -> option value (post-MVP)", CHOICE, known_values=_HEAT,
    ),
    FieldRule(
        "hnt_commercialsegment", "commercial_segment", _field("commercial_segment"), "as is (post-MVP)", TEXT,
    ),
    FieldRule(
        "hnt_commercialheat", "commercial_heat", _field("commercial_heat"),
        "label -> option value (post-MVP)", CHOICE, known_values=_HEAT,
    ),
    FieldRule(
        "hnt_ispartnercenterreferral", "referral_id", _has_referral, "whether referral_id is present (post-MVP)",
        YES_NO,
    ),
)
# fmt: on


def map_lead(
    lead: Mapping[str, Any], schema: LeadSchema, *, choice_overrides: ChoiceOverrides | None = None
) -> MappedLead:
    """Map a validated Hunter lead to the columns this org has. Never raises for a value that does
    not fit: that column is left out (or text cut) with a warning."""
    payload: dict[str, Any] = {}
    warnings: list[MappingWarning] = []
    missing: list[str] = []
    for rule in FIELD_RULES:
        value = rule.derive(lead)
        if value is None:
            continue
        column = schema.get(rule.column)
        if column is None:
            missing.append(rule.column)
            continue
        converted, reason = _convert(value, column, (choice_overrides or {}).get(rule.column, {}))
        if reason:
            warnings.append(MappingWarning(rule.column, reason))
        if converted is not None:
            payload[rule.column] = converted
    return MappedLead(payload=payload, warnings=tuple(warnings), missing_columns=tuple(missing))


def resolve_choice(column: Column, label: str, overrides: Mapping[str, int | str]) -> int | None:
    """The option value for a Hunter label: an override first, then the org's label, ignoring case."""
    wanted = label.strip().lower()
    override = next((target for hunter, target in overrides.items() if hunter.strip().lower() == wanted), None)
    if isinstance(override, int):
        return override if override in column.options.values() else None
    return column.option_value(override if override is not None else label)


def payload_fingerprint(payload: Mapping[str, Any]) -> str:
    """sha256 of the payload's canonical JSON: equal payloads, equal fingerprints."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def load_choice_overrides(path: str | Path) -> ChoiceOverrides:
    """Read `{"<choice column>": {"<Hunter label>": <option value> | "<Dataverse label>"}}`.
    Raises ChoiceOverridesError naming the file and every problem."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ChoiceOverridesError(f"{path}: cannot read choice overrides ({exc})") from exc
    if not isinstance(data, dict):
        raise ChoiceOverridesError(f"{path}: expected a JSON object of choice columns")
    choice_columns = {rule.column for rule in FIELD_RULES if rule.expected_type == CHOICE}
    problems = []
    overrides = {}
    for column, labels in data.items():
        if column not in choice_columns:
            problems.append(f"{column!r} is not a mapped choice column ({', '.join(sorted(choice_columns))})")
            continue
        if not isinstance(labels, dict):
            problems.append(f"{column}: expected an object of Hunter label -> option value or label")
            continue
        for label, target in labels.items():
            if isinstance(target, bool) or not isinstance(target, (int, str)) or target == "":
                problems.append(f"{column}.{label}: expected an option value (integer) or a label, got {target!r}")
        overrides[column] = MappingProxyType({label.strip().lower(): target for label, target in labels.items()})
    if problems:
        raise ChoiceOverridesError(f"{path}: invalid choice overrides: " + "; ".join(problems))
    return MappingProxyType(overrides)


def _convert(value: Any, column: Column, overrides: Mapping[str, int | str]) -> tuple[Any, str | None]:
    """(value to send or None, warning or None) for the column's type."""
    kind = column.attribute_type
    if kind in TEXT_TYPES:
        text = str(value)
        if column.max_length is not None and len(text) > column.max_length:
            return text[: column.max_length], f"cut from {len(text)} to {column.max_length} characters"
        return text, None
    if kind in WHOLE_NUMBER_TYPES:
        number = _whole_number(value)
        return (number, None) if number is not None else (None, f"{type(value).__name__} is not a whole number")
    if kind in DECIMAL_TYPES:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            return value, None
        return None, f"{type(value).__name__} is not a number"
    if kind == "Boolean":
        return (value, None) if isinstance(value, bool) else (None, f"{type(value).__name__} is not true/false")
    if kind in CHOICE_TYPES:
        option = resolve_choice(column, str(value), overrides)
        if option is None:
            return None, f"no option for {value!r} (options: {', '.join(column.labels) or 'none'})"
        return option, None
    return None, f"column type {kind or 'unknown'} is not supported"


def _whole_number(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None
