"""The lead table's columns as the organisation defines them, parsed from metadata responses.

Pure: the client fetches the JSON (`DataverseClient.read_lead_schema`), this module only reads it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Column:
    logical_name: str
    attribute_type: str  # AttributeType as Dataverse reports it: "String", "Memo", "Picklist", ...
    max_length: int | None = None
    options: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))  # lower-cased label -> value
    labels: tuple[str, ...] = ()  # the option labels as written, in Dataverse's order

    def option_value(self, label: str) -> int | None:
        return self.options.get(label.strip().lower())


@dataclass(frozen=True)
class LeadSchema:
    columns: Mapping[str, Column]

    def get(self, name: str) -> Column | None:
        return self.columns.get(name)

    def has(self, name: str) -> bool:
        return name in self.columns


def parse_lead_schema(
    attributes_json: Mapping[str, Any],
    picklists_json: Mapping[str, Any],
    strings_json: Mapping[str, Any],
    memos_json: Mapping[str, Any],
) -> LeadSchema:
    """Build the schema from the bodies of the Attributes list and the Picklist, String and Memo
    casts. Raises ValueError when a body is not a metadata collection."""
    max_lengths = {
        item["LogicalName"]: item.get("MaxLength") for body in (strings_json, memos_json) for item in _items(body)
    }
    options = {item["LogicalName"]: _options(item) for item in _items(picklists_json)}
    columns = {}
    for item in _items(attributes_json):
        name = item["LogicalName"]
        labelled = options.get(name, ())
        columns[name] = Column(
            logical_name=name,
            attribute_type=item.get("AttributeType") or "",
            max_length=max_lengths.get(name),
            options=MappingProxyType({label.lower(): value for label, value in reversed(labelled)}),
            labels=tuple(label for label, _ in labelled),
        )
    return LeadSchema(columns=MappingProxyType(columns))


def _items(body: Mapping[str, Any]) -> list[dict]:
    items = body.get("value") if isinstance(body, Mapping) else None
    if not isinstance(items, list) or not all(isinstance(i, dict) and "LogicalName" in i for i in items):
        raise ValueError("not a metadata collection: expected {'value': [{'LogicalName': ...}, ...]}")
    return items


def _options(picklist: Mapping[str, Any]) -> tuple[tuple[str, int], ...]:
    """(label, value) pairs; a local option set wins over a global one."""
    option_set = picklist.get("OptionSet") or picklist.get("GlobalOptionSet") or {}
    pairs = []
    for option in option_set.get("Options") or ():
        label = _label(option.get("Label"))
        if label is not None and isinstance(option.get("Value"), int):
            pairs.append((label, option["Value"]))
    return tuple(pairs)


def _label(label: Mapping[str, Any] | None) -> str | None:
    if not label:
        return None
    user = label.get("UserLocalizedLabel")
    if user and user.get("Label"):
        return user["Label"]
    localized = label.get("LocalizedLabels") or []
    return localized[0].get("Label") if localized and localized[0].get("Label") else None
